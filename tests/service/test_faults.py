"""Crashes and failing dependencies: the API killed under load, Redis stopped or hung, a tampered checkpoint.

SIGKILL of the API under load (Redis store)  sessions hold every acknowledged batch (and at most the
                                             one in flight); after a restart they go on to equal a replay
redis-server stopped                         503 unavailable naming the store, /readyz 503; back by itself
                                             when Redis returns, the session where it was
redis-server restarted while idle            the next request retries once on a fresh connection: served
redis-server hung (SIGSTOP)                  503 after the Redis timeout, never a hang; a retried batch
                                             is applied once when it resumes
tampered or truncated new champion           refused by reload and by the poll; the old one keeps serving
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
import torch
from fastapi.testclient import TestClient

from models.series import Observation
from service.http.app import create_app
from tests.factories import tiny_checkpoint
from tests.service.conftest import MakeSettings
from tests.support.processes import ServiceProcess
from tests.support.redis_processes import RedisProcess
from tests.support.soak import feed, open_streams
from tests.support.soak_check import verify
from tests.support.soak_client import FaultRates, FaultyStream
from tests.support.soak_setup import SoakPlan, bars, service_env
from training.registry import MANIFEST_FILE, Registry

pytestmark = [pytest.mark.slow, pytest.mark.timing]  # not in `make check`: see the "slow" marker in pyproject.toml

TIMEOUT = 0.5  # LATENTCAST_REDIS_TIMEOUT_SECONDS of these tests
# an answer to a store that is away comes within its timeout, plus this for a loaded machine
SLACK = 1.5


# the API killed under load ------------------------------------------------------


def test_the_api_killed_under_load_keeps_every_acknowledged_batch_and_goes_on_after_a_restart(
    registry: Registry, redis_server: str, tmp_path: Path
):
    plan = SoakPlan(sessions=6, observations=150, seconds=90.0, rates=FaultRates(drop=0.05))
    env = service_env(registry, "redis", redis_server, plan, poll=0)
    log = tmp_path / "serve.log"
    server = ServiceProcess(env, log).start()
    restarted = ServiceProcess(env, log, port=server.port)
    raw = redis.Redis.from_url(redis_server)

    async def scenario() -> tuple[list[FaultyStream], list[int], list[int]]:
        streams = await open_streams(server.url, plan, bars(plan), 0)
        feeding = asyncio.create_task(feed(streams, [server.url], plan, time.monotonic() + plan.seconds))
        total = sum(len(s.observations) - s.warm for s in streams)
        while sum(s.stats.applied for s in streams) < total // 3:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(server.kill)  # mid-stream: requests in flight, some batches applied unanswered
        await asyncio.sleep(0.5)  # answers written before the kill have been read by now; no more can come
        acknowledged = [s.next_seq for s in streams]
        prefix = env["LATENTCAST_REDIS_PREFIX"]
        stored = [int(raw.hget(f"{prefix}:{{{s.session_id}}}", "next_seq") or -1) for s in streams]
        await asyncio.to_thread(restarted.start)
        await feeding
        return streams, acknowledged, stored

    try:
        streams, acknowledged, stored = asyncio.run(scenario())
        for ack, held in zip(acknowledged, stored, strict=True):
            # every acknowledged batch survived; at most the batch in flight was applied without an answer
            assert ack <= held <= ack + plan.rates.max_batch, (acknowledged, stored)
        assert [s.stats.problems for s in streams] == [[]] * len(streams)
        assert all(s.done for s in streams) and sum(s.stats.waits for s in streams) > 0
        mismatches, held_now = verify(server.url, streams, registry, plan)
        assert mismatches == [] and held_now == [len(s.observations) for s in streams]
    finally:
        raw.close()
        server.stop()
        restarted.stop()


# Redis stopped, hung, back ------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_with_redis_away_the_service_answers_503_and_recovers_by_itself(
    own_redis: RedisProcess, make_settings: MakeSettings, registry: Registry, closes
):
    settings = make_settings(store="redis", redis_url=own_redis.url, redis_timeout_seconds=TIMEOUT)
    unavailable = "session store is unavailable: redis "
    with TestClient(create_app(settings)) as client:
        session = client.post("/v1/sessions", json={"history": closes[:5]}).json()["session_id"]
        url = f"/v1/sessions/{session}"

        def append(seq: int) -> Any:
            return client.post(f"{url}/observations", json={"seq": seq, "observations": [closes[seq]]})

        assert append(5).status_code == 200

        own_redis.stop()
        for call in (lambda: append(6), lambda: client.get(url), lambda: client.post("/v1/sessions")):
            response, seconds = timed(call)
            assert response.status_code == 503 and seconds < TIMEOUT + SLACK
            assert response.json()["error"]["code"] == "unavailable"
            assert response.json()["error"]["message"].startswith(unavailable)
            assert str(own_redis.port) not in response.text  # the host and port stay in the server log
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["error"]["message"].startswith(unavailable)
        assert client.get("/healthz").status_code == 200 and client.get("/metrics").status_code == 200

        own_redis.start()  # same port, same append-only file; the app is not restarted
        assert client.get("/readyz").status_code == 200
        assert append(6).json()["next_seq"] == 7  # the session survived, and the refused batch was not applied

        own_redis.pause(True)  # hung: accepts connections, answers nothing
        try:
            response, seconds = timed(lambda: append(7))
            assert response.status_code == 503 and seconds < TIMEOUT + SLACK
            assert response.json()["error"]["message"] == unavailable + "TimeoutError"
            ready, seconds = timed(lambda: client.get("/readyz"))
            assert ready.status_code == 503 and seconds < TIMEOUT + SLACK
        finally:
            own_redis.pause(False)
        # the timed-out batch may have run when Redis resumed: its retry is answered once either way
        retried = append(7)
        assert retried.status_code == 200 and retried.json()["next_seq"] == 8
        info = client.get(url).json()
        assert info["next_seq"] == 8
    offline = registry.predictor(info["model"]["version"]).forecast_history([Observation(close=c) for c in closes[:8]])
    assert offline is not None
    np.testing.assert_allclose(info["forecast"]["log_return"], offline.log_return, atol=1e-4)


def test_the_first_request_after_redis_restarts_is_served_on_a_fresh_connection(
    own_redis: RedisProcess, registry: Registry, tmp_path: Path, closes
):
    # the pooled connections died with the server while idle: each request finds one dead on use
    env = {
        "LATENTCAST_ARTIFACTS": str(registry.root),
        "LATENTCAST_REGISTRY_POLL_SECONDS": "0",
        "LATENTCAST_STORE": "redis",
        "LATENTCAST_REDIS_URL": own_redis.url,
        "LATENTCAST_REDIS_PREFIX": "restart",
    }
    with ServiceProcess(env, tmp_path / "serve.log") as server, httpx.Client(base_url=server.url) as client:
        opened = [client.post("/v1/sessions", json={"history": closes[:5]}).json()["session_id"] for _ in range(3)]
        own_redis.stop()
        own_redis.start()  # same port, same append-only file
        appended = client.post(f"/v1/sessions/{opened[0]}/observations", json={"seq": 5, "observations": [closes[5]]})
        assert appended.status_code == 200, appended.text
        assert appended.json()["next_seq"] == 6
        assert [client.get(f"/v1/sessions/{s}").status_code for s in opened] == [200, 200, 200]
        assert client.post("/v1/sessions", json={"history": closes[:5]}).status_code == 201
        assert client.get("/readyz").status_code == 200


# tampered checkpoints -----------------------------------------------------------


class Exploit:
    """Pickles to a call of ``print``: a checkpoint must never run what it holds."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("a checkpoint ran code",))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def pickled_code_with_a_matching_manifest(path: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"format": 1, "config": Exploit()}, buffer)
    path.write_bytes(buffer.getvalue())
    # whoever can write the weights can rewrite the manifest too: then only weights_only loading stands
    manifest_path = path.parent / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())
    manifest["files"]["model.pt"] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps(manifest))


TAMPERINGS = {
    "truncated weights": (truncate, "model.pt does not match its manifest (corrupt or tampered)"),
    "one byte flipped": (flip_a_byte, "model.pt does not match its manifest (corrupt or tampered)"),
    "pickled code, manifest rewritten": (
        pickled_code_with_a_matching_manifest,
        "model.pt: unreadable checkpoint (UnpicklingError: it holds objects other than tensors and plain values, "
        "which weights-only loading refuses)",
    ),
}


@pytest.fixture
def own_registry(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path / "artifacts")
    registry.promote(registry.register(tiny_checkpoint("latent", seed=1)).version)
    return registry


def tampered_champion(registry: Registry, how: str) -> str:
    """A new version promoted (it verified then), whose weights are changed afterwards."""
    version = registry.register(tiny_checkpoint("latent", seed=9)).version
    registry.promote(version)
    TAMPERINGS[how][0](registry.path(version) / "model.pt")
    return version


def champion_tampered_before_the_poll(registry: Registry, how: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new champion whose weights were changed before any poll could load them.

    Tampering after the promotion would race a fast poll, which may load the good weights first;
    the promotion's own load check is lifted for this one call so the damaged files become champion.
    """
    version = registry.register(tiny_checkpoint("latent", seed=9)).version
    TAMPERINGS[how][0](registry.path(version) / "model.pt")
    monkeypatch.setattr(registry, "load", lambda version: None)
    registry.promote(version)
    return version


@pytest.mark.parametrize("how", list(TAMPERINGS))
def test_a_tampered_new_champion_is_refused_by_reload_and_the_old_one_keeps_serving(
    own_registry: Registry, make_settings: MakeSettings, closes, capsys, how: str
):
    old = own_registry.champion("latent")
    with TestClient(create_app(make_settings(artifacts=own_registry.root))) as client:
        session = client.post("/v1/sessions", json={"history": closes[:5]}).json()["session_id"]
        bad = tampered_champion(own_registry, how)
        reloaded = client.post("/v1/models/reload").json()
        assert reloaded["champions"] == {"latent": old} and reloaded["changed"] == {}
        assert reloaded["failed"]["latent"].startswith(f"version {bad}: ")
        assert TAMPERINGS[how][1] in reloaded["failed"]["latent"]
        assert client.post("/v1/sessions", json={"history": closes[:5]}).json()["model"]["version"] == old
        posted = client.post(f"/v1/sessions/{session}/observations", json={"seq": 5, "observations": closes[5:8]})
        assert posted.status_code == 200 and posted.json()["model"]["version"] == old
        assert client.post("/v1/forecast", json={"observations": closes[:9]}).status_code == 200
        assert client.get("/readyz").json()["champions"] == {"latent": old}
    assert "a checkpoint ran code" not in capsys.readouterr().out


def test_a_tampered_new_champion_is_refused_by_the_poll_while_requests_go_on(
    own_registry: Registry, make_settings: MakeSettings, closes, monkeypatch: pytest.MonkeyPatch
):
    old = own_registry.champion("latent")
    settings = make_settings(artifacts=own_registry.root, registry_poll_seconds=0.1)
    with TestClient(create_app(settings)) as client:
        bad = champion_tampered_before_the_poll(own_registry, "truncated weights", monkeypatch)
        deadline = time.monotonic() + 30
        failed = 0.0
        while failed < 2 and time.monotonic() < deadline:  # two polls saw it and refused it
            response = client.post("/v1/forecast", json={"observations": closes[:9]})
            assert response.status_code == 200 and response.json()["model"]["version"] == old
            metrics = client.get("/metrics").text
            failed = sum(float(line.split()[-1]) for line in metrics.splitlines() if 'result="failed"' in line)
        assert failed >= 2
        assert client.get("/readyz").json()["champions"] == {"latent": old}
        assert bad not in client.get("/v1/models").json()["champions"].values()
