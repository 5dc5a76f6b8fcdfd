"""Service test setup: a registry of tiny champions, real prices, apps, and a real redis-server."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from data import sources
from models.predictor import Observation
from service.app import create_app
from service.config import Settings
from tests.factories import tiny_checkpoint
from tests.service.servers import free_port, wait_until
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
    frame = sources.bundled(["IBM"]).iloc[:400]
    return [
        Observation(
            close=float(r["close"]),
            open=float(r["open"]),
            high=float(r["high"]),
            low=float(r["low"]),
            volume=float(r["volume"]),
            time=r["date"].date().isoformat(),
        )
        for r in frame.to_dict("records")
    ]


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


def redis_server_binary() -> str:
    """``redis-server``, installed with apt-get when missing and running as root."""
    found = shutil.which("redis-server")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=False, env=env, capture_output=True)
        found = shutil.which("redis-server")
    if found is None:
        pytest.fail("the Redis store tests need redis-server: install it (apt-get install redis-server)")
    return found


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free port with an append-only file in a temp dir; yields its URL."""
    folder: Path = tmp_path_factory.mktemp("redis")
    port = free_port()
    command = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)]
    command += ["--save", "", "--appendonly", "yes", "--loglevel", "warning"]
    with open(folder / "redis.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    client = redis.Redis(port=port, socket_connect_timeout=1)
    try:
        wait_until(lambda: _pings(client), process, what=f"redis-server on port {port}", log=folder / "redis.log")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix of this test's own, so that tests sharing the server do not meet."""
    return "test-" + request.node.name.replace("[", "-").replace("]", "")[:80]
