"""Service test setup: a registry of tiny champions, real prices, apps, a real redis-server and Redis Cluster."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bench.harness import RedisClusterProcess, RedisProcess
from models.predictor import Observation
from service.app import create_app
from service.config import Settings
from tests.factories import real_bars, tiny_checkpoint
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
