"""A short soak with faults (the one of ``bench/soak.py``, smaller) against real ``latentcast serve`` processes.

Sessions stream real bars through a client that retries, overlaps, drops
connections and sends out of order; at the end each session's seq, forecast and
retained observations equal an offline replay, nothing acknowledged is missing,
and the servers applied each observation once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.factories import tiny_checkpoint
from tests.support.processes import ServiceProcess
from tests.support.soak import passed, retrain_overlapped, soak, table
from tests.support.soak_setup import KEYS, SoakPlan, service_env
from training.registry import Registry

pytestmark = pytest.mark.slow  # not in `make check`: see the "slow" marker in pyproject.toml

PLAN = SoakPlan(sessions=6, observations=60, seconds=60.0)


@pytest.fixture
def soak_registry(tmp_path: Path) -> Registry:
    """Two untrained versions of each mode, the first champion: the migration check needs another version.

    They claim prices only up to mid-2012, so a retrain on the bundled prices has newer ones to learn from.
    """
    registry = Registry(tmp_path / "artifacts")
    for seed in (1, 2):
        for mode in ("ar", "latent"):
            version = registry.register(tiny_checkpoint(mode, seed=seed, last="2012-06-29")).version
            if seed == 1:
                registry.promote(version)
    return registry


@contextlib.contextmanager
def servers(env: dict[str, str], count: int, folder: Path) -> Iterator[list[str]]:
    started = [ServiceProcess(env, folder / f"serve-{i}.log") for i in range(count)]
    try:
        yield [server.start().url for server in started]
    finally:
        for server in started:
            server.stop()


MODES = [("memory", "rest"), ("redis", "rest"), ("memory", "bulk"), ("redis", "bulk"), ("redis", "stream")]
MODES += [("redis-cluster", "rest"), ("redis-cluster", "bulk")]


@pytest.mark.parametrize(("store", "via"), MODES)
def test_a_short_soak_loses_nothing_and_applies_nothing_twice(
    soak_registry: Registry, tmp_path: Path, request, store: str, via: str
):
    cluster = store == "redis-cluster"
    redis_url = request.getfixturevalue("redis_cluster" if cluster else "redis_server") if store != "memory" else None
    env = service_env(soak_registry, "memory" if store == "memory" else "redis", redis_url, PLAN, 0, cluster)
    count = 1 if store == "memory" else 2  # two processes on one Redis: only its compare-and-set keeps order
    with servers(env, count, tmp_path) as urls:
        result = asyncio.run(soak(urls, soak_registry, PLAN, retrain=False, via=via))
    shown = table(store, count, result)
    assert passed(result), shown
    totals = result.totals
    assert totals.applied == PLAN.sessions * (PLAN.observations - PLAN.warm), shown
    assert min(totals.retries, totals.overlaps, totals.dropped, totals.out_of_order) > 0, shown
    assert result.applied_by_servers == totals.applied  # the servers' own count: nothing applied twice


def test_a_short_soak_with_shadows_on_two_processes_on_one_redis(
    soak_registry: Registry, tmp_path: Path, redis_server: str
):
    env = service_env(soak_registry, "redis", redis_server, PLAN, 0) | {"LATENTCAST_SHADOW": "1"}
    with servers(env, 2, tmp_path) as urls:
        result = asyncio.run(soak(urls, soak_registry, PLAN, retrain=False, via="rest"))
        live = httpx.get(f"{urls[0]}/v1/models/live", headers={"X-API-Key": KEYS[0]}).json()["models"]
    shown = table("redis", 2, result)
    assert passed(result), shown
    assert result.totals.applied == PLAN.sessions * (PLAN.observations - PLAN.warm), shown
    assert result.applied_by_servers == result.totals.applied
    # the shadows settled as many one-step forecasts as their sessions' models, whatever the faults did
    counts = {m["mode"]: m["horizons"][0]["count"] for m in live if m["horizons"]}
    assert counts["ar/shadow"] + counts["latent/shadow"] > 0, counts


def test_a_short_soak_while_a_retrain_promotes_new_champions(soak_registry: Registry, tmp_path: Path):
    plan = SoakPlan(sessions=4, observations=60, seconds=120.0)
    env = service_env(soak_registry, "memory", None, plan, poll=0.2)
    before = soak_registry.champions()
    with servers(env, 1, tmp_path) as urls:
        result = asyncio.run(soak(urls, soak_registry, plan, retrain=True))
    assert passed(result), table("memory", 1, result)
    assert result.retrain is not None and retrain_overlapped(result.retrain), result.retrain
    assert all(soak_registry.champion(mode) != version for mode, version in before.items())
