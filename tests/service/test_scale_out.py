"""Several API processes on one Redis, as replicas behind a load balancer: a session continues on any of them."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from latentcast_client import Client, ClientSettings

from models.series import Observation
from tests.service.test_e2e import assert_close, env
from tests.support.processes import START_SECONDS, ServiceProcess, serve_command
from tests.support.workers import connection_owners, listening_owners, serving_workers
from training.registry import Registry

pytestmark = pytest.mark.slow
WARM = 20
CONNECTION_TRIES = 50  # connections opened until each of two workers holds one


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
    offline = registry.predictor(session.model["version"]).forecast_history(
        [Observation(close=c) for c in closes[: WARM + 43]]
    )
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
    with two as server, contextlib.ExitStack() as opened:
        pids = serving_workers(server, 2)
        # each worker listens on a socket of its own (service/http/listeners.py); the supervisor on none
        assert sorted(listening_owners(server.port, [server.pid, *pids])) == pids
        on = connection_to_each(server, pids, opened)
        status, opened_reply = post(on[pids[0]], "/v1/sessions", {"history": closes[:WARM]})
        assert status == 201, opened_reply
        session_id = opened_reply["session_id"]
        for seq in range(WARM, WARM + 10):
            # each worker in turn: the session's state goes through Redis from one to the other
            status, reply = append(on[pids[seq % 2]], session_id, seq, closes[seq])
            assert status == 200 and reply["next_seq"] == seq + 1, reply
        # a worker that dies is replaced, and its replacement listens on a socket of its own
        os.kill(pids[0], signal.SIGKILL)
        replaced = serving_workers(server, 2)
        [new] = set(replaced) - set(pids)
        assert sorted(listening_owners(server.port, [server.pid, *replaced])) == replaced
        status, reply = append(
            connection_to_each(server, replaced, opened)[new], session_id, WARM + 10, closes[WARM + 10]
        )
        assert status == 200 and reply["next_seq"] == WARM + 11, reply
    assert two.process is not None and two.process.returncode == 0  # SIGTERM: every worker shut down in time
    offline = registry.predictor(reply["model"]["version"]).forecast_history(
        [Observation(close=c) for c in closes[: WARM + 11]]
    )
    assert offline is not None
    assert_close(reply["forecast"], offline.to_dict())


def connection_to_each(
    server: ServiceProcess, pids: list[int], opened: contextlib.ExitStack
) -> dict[int, http.client.HTTPConnection]:
    """A kept-alive connection to each worker, by pid: the kernel picks the worker of a new connection."""
    on: dict[int, http.client.HTTPConnection] = {}
    for _ in range(CONNECTION_TRIES):
        connection = opened.enter_context(contextlib.closing(http.client.HTTPConnection("127.0.0.1", server.port)))
        assert post(connection, "/healthz", None)[0] == 200
        on.setdefault(connection_owners(server.port, pids)[connection.sock.getsockname()[1]], connection)
        if len(on) == len(pids):
            return on
    raise AssertionError(f"{CONNECTION_TRIES} connections reached only the workers {sorted(on)} of {pids}")


def append(connection: http.client.HTTPConnection, session_id: str, seq: int, close: float) -> tuple[int, Any]:
    return post(connection, f"/v1/sessions/{session_id}/observations", {"seq": seq, "observations": [close]})


def post(connection: http.client.HTTPConnection, path: str, body: object) -> tuple[int, Any]:
    """POST ``body`` as JSON (GET without one) on ``connection``, kept open: the status and the reply."""
    payload = json.dumps(body) if body is not None else None
    connection.request("GET" if body is None else "POST", path, payload, {"Content-Type": "application/json"})
    answer = connection.getresponse()
    return answer.status, json.loads(answer.read())
