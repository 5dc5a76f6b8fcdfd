"""Several API processes on one Redis, as replicas behind a load balancer: a session continues on any of them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bench.harness import START_SECONDS, ServiceProcess, serve_command
from models.predictor import Observation
from service.client import Client, ClientSettings
from tests.service.test_e2e import assert_close, env
from training.registry import Registry

pytestmark = pytest.mark.slow
WARM = 20


def test_a_session_opened_on_one_process_continues_on_another(
    registry: Registry, closes, redis_server: str, redis_prefix: str, tmp_path: Path
):
    settings = env(registry, store="redis", redis_url=redis_server, redis_prefix=redis_prefix)
    with (
        ServiceProcess(settings, tmp_path / "first.log") as first,
        ServiceProcess(settings, tmp_path / "second.log") as second,
        Client(ClientSettings(first.url)) as one,
        Client(ClientSettings(second.url)) as other,
    ):
        session = one.open(closes[:WARM])
        for seq in range(WARM, WARM + 40):
            # each process in turn, the same session object: its seq tracked across both
            reply = (one if seq % 2 else other).append(session, [closes[seq]])
        again = other.session(session.session_id)
        many = one.append_many([(again, [closes[WARM + 40]]), (again, [closes[WARM + 41]])])
        with other.feed() as feed:
            [streamed] = feed.send([(again, [closes[WARM + 42]])])
    assert reply["next_seq"] == WARM + 40 and again.next_seq == WARM + 43
    assert [r["next_seq"] for r in many if isinstance(r, dict)] == [WARM + 41, WARM + 42]
    assert isinstance(streamed, dict)
    offline = registry.predictor(session.model["version"]).run([Observation(close=c) for c in closes[: WARM + 43]])
    assert offline is not None
    assert_close(streamed["forecast"], offline.to_dict())


def workers(count: int) -> Callable[[int], list[str]]:
    return lambda port: [*serve_command(port), "--workers", str(count)]


def test_serve_runs_several_workers_on_the_redis_store(
    registry: Registry, closes, redis_server: str, redis_prefix: str, tmp_path: Path
):
    settings = env(registry, store="redis", redis_url=redis_server, redis_prefix=redis_prefix)
    # each worker imports torch and loads the models, the workers sharing the cores
    two = ServiceProcess(settings, tmp_path / "serve.log", command=workers(2), start_seconds=2 * START_SECONDS)
    with (
        two as server,
        Client(ClientSettings(server.url)) as http,
    ):
        sessions = [http.open(closes[i : i + WARM]) for i in range(8)]
        for seq in range(WARM, WARM + 10):
            replies = [http.append(s, [closes[i + seq]]) for i, s in enumerate(sessions)]
        assert [r["next_seq"] for r in replies] == [WARM + 10] * len(sessions)
