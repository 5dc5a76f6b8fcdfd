"""Service test setup: a registry of tiny champions, real prices, apps, a real redis-server and Redis Cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from models.series import Observation
from service.config import Settings
from service.http.app import create_app
from service.stores import SessionStore, StoreLimits
from service.stores.memory import MemorySessionStore
from service.stores.redis import RedisSessionStore
from tests.factories import real_bars, tiny_checkpoint
from tests.service.store_records import TIMEOUT, MakeStore
from tests.support.redis_processes import RedisClusterProcess, RedisProcess
from training.registry import Registry

MakeSettings = Callable[..., Settings]


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """Champions of both modes (tiny, closes only), and a bar-reading latent version that is not."""
    registry = Registry(tmp_path_factory.mktemp("artifacts"))
    for mode in ("latent", "ar"):
        registry.promote(registry.register(tiny_checkpoint(mode, seed=1)).version)
    registry.register(tiny_checkpoint("latent", seed=2, n_features=3))
    return registry


def versions(registry: Registry, mode: str) -> list[str]:
    return [v.version for v in registry.versions(mode)]


@pytest.fixture(scope="session")
def bars() -> list[Observation]:
    """400 real daily bars of IBM, from 2000-03-01."""
    return real_bars("IBM", 400)


@pytest.fixture(scope="session")
def closes(bars: list[Observation]) -> list[float]:
    return [b.close for b in bars]


@pytest.fixture
def make_settings(registry: Registry) -> MakeSettings:
    """Settings on the shared registry, no polling, overridable per test."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"artifacts": registry.root, "registry_poll_seconds": 0}
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def client(make_settings: MakeSettings) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings())) as client:
        yield client


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free port with an append-only file in a temp dir; yields its URL."""
    with RedisProcess(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis Cluster of 3 masters (redis-server processes on free ports); yields its first node's URL."""
    with RedisClusterProcess(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster.url


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix of this test's own, so that tests sharing the server do not meet."""
    return "test-" + request.node.name.replace("[", "-").replace("]", "")[:80]


@pytest.fixture
def evictions() -> dict[str, int]:
    return {}


@pytest.fixture(params=["memory", "redis", pytest.param("redis-cluster", marks=pytest.mark.slow)])
async def make_store(request: pytest.FixtureRequest, evictions: dict[str, int]) -> AsyncIterator[MakeStore]:
    """Builds stores of the parametrised kind with the given limits; closes them after the test."""
    made: list[SessionStore] = []

    def count(reason: str, n: int) -> None:
        evictions[reason] = evictions.get(reason, 0) + n

    def make(
        ttl_seconds: float = 60.0,
        max_sessions: int = 100,
        retained_observations: int = 5,
        retained_replies: int = 2,
        max_sessions_per_owner: int | None = None,
    ) -> SessionStore:
        limits = StoreLimits(ttl_seconds, max_sessions, retained_observations, retained_replies, max_sessions_per_owner)
        store: SessionStore
        if request.param == "memory":
            store = MemorySessionStore(limits, on_evict=count)
        else:
            cluster = request.param == "redis-cluster"
            url = request.getfixturevalue("redis_cluster" if cluster else "redis_server")
            prefix = request.getfixturevalue("redis_prefix")
            store = RedisSessionStore(url, limits, prefix=prefix, on_evict=count, cluster=cluster, timeout=TIMEOUT)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()
