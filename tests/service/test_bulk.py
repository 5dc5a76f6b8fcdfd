"""``POST /v1/observations`` through a real ``latentcast serve``: each item answered as a single append would be."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from models.series import Observation
from tests.service.test_e2e import assert_close, env
from tests.support.processes import ServiceProcess
from training.registry import Registry

# each test talks to a real latentcast serve process: the full tier runs them, make check does not
pytestmark = pytest.mark.slow

ALICE = "alice-key-0123456789abcdef"
BOB = "bob-key-0123456789abcdefgh"
WARM = 20


@pytest.fixture(scope="module")
def server(registry: Registry, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("bulk") / "serve.log"
    with ServiceProcess(env(registry, api_keys=f"{ALICE},{BOB}", max_bulk_items="16"), log) as server:
        yield server


def client(server: ServiceProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"X-API-Key": key})


def open_session(http: httpx.Client, closes: list[float]) -> str:
    reply = http.post("/v1/sessions", json={"history": closes[:WARM]})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["session_id"])


def state(http: httpx.Client, session_id: str) -> dict[str, Any]:
    reply = http.get(f"/v1/sessions/{session_id}")
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def test_each_item_gets_its_own_status_and_nothing_else_changes(server, registry: Registry, closes):
    with client(server, ALICE) as alice, client(server, BOB) as bob:
        fed, retried, gapped, invalid = (open_session(alice, closes) for _ in range(4))
        foreign = open_session(bob, closes)
        first_try = alice.post(
            f"/v1/sessions/{retried}/observations", json={"seq": WARM, "observations": closes[20:22]}
        )
        before = {sid: state(alice, sid) for sid in (retried, gapped, invalid)} | {foreign: state(bob, foreign)}
        items = [
            {"session_id": fed, "seq": WARM, "observations": [closes[WARM]]},
            {"session_id": retried, "seq": WARM, "observations": closes[20:22]},
            {"session_id": gapped, "seq": WARM + 3, "observations": [closes[WARM]]},
            {"session_id": foreign, "seq": WARM, "observations": [closes[WARM]]},
            {"session_id": invalid, "seq": WARM, "observations": [closes[WARM], -1.0]},
            {"session_id": invalid, "observations": [closes[WARM]]},
            {"session_id": "no-such-session", "seq": 0, "observations": [1.0]},
            {"session_id": fed, "seq": WARM + 1, "observations": closes[21:23]},
        ]
        reply = alice.post("/v1/observations", json={"items": items})
        assert reply.status_code == 200, reply.text
        got = reply.json()["items"]
        assert [item["status"] for item in got] == [200, 200, 409, 404, 422, 422, 404, 200]
        assert got[0]["reply"]["next_seq"] == WARM + 1 and got[7]["reply"]["next_seq"] == WARM + 3
        assert got[1]["reply"] == first_try.json()
        assert got[2]["error"] == {
            "code": "conflict",
            "message": f"seq {WARM + 3} leaves a gap: the session expects seq {WARM}",
            "expected_seq": WARM,
            "reason": "gap",
        }
        assert got[3]["error"]["code"] == "not_found" and got[6]["error"]["code"] == "not_found"
        assert got[3]["error"]["message"] == (
            f"no session {foreign!r}: it does not exist, has expired or belongs to another key"
        )
        assert got[4]["error"]["code"] == "invalid_data" and got[4]["error"]["seq"] == WARM + 1
        assert got[5]["error"] == {
            "code": "invalid_request",
            "message": "seq: Field required",
            "errors": [{"field": "seq", "message": "Field required"}],
        }
        after = {sid: state(alice, sid) for sid in (retried, gapped, invalid)} | {foreign: state(bob, foreign)}
        assert after == before
        final = state(alice, fed)
    offline = registry.predictor(final["model"]["version"]).forecast_history(
        [Observation(close=c) for c in closes[: WARM + 3]]
    )
    assert offline is not None and final["next_seq"] == WARM + 3
    assert_close(final["forecast"], offline.to_dict())


def test_many_sessions_in_one_request_equal_their_offline_replays(server, registry: Registry, closes):
    with client(server, ALICE) as alice:
        sessions = [open_session(alice, closes[i:]) for i in range(12)]
        for seq in range(WARM, WARM + 10):
            items = [
                {"session_id": sid, "seq": seq, "observations": [closes[i + seq]]} for i, sid in enumerate(sessions)
            ]
            reply = alice.post("/v1/observations", json={"items": items})
            assert [item["status"] for item in reply.json()["items"]] == [200] * len(sessions)
        last = reply.json()["items"]
    for i, item in enumerate(last):
        offline = registry.predictor(item["reply"]["model"]["version"]).forecast_history(
            [Observation(close=c) for c in closes[i : i + WARM + 10]]
        )
        assert offline is not None
        assert_close(item["reply"]["forecast"], offline.to_dict())


def test_a_request_is_refused_whole_only_when_malformed_or_over_the_bound(server):
    with client(server, ALICE) as alice:
        too_many = alice.post("/v1/observations", json={"items": [{"session_id": "x", "seq": 0}] * 17})
        assert too_many.status_code == 413
        assert too_many.json()["error"]["message"] == "17 items; the limit is 16 (LATENTCAST_MAX_BULK_ITEMS)"
        assert alice.post("/v1/observations", json={"items": []}).status_code == 422
        assert alice.post("/v1/observations", json=[1]).status_code == 422
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.post("/v1/observations", json={"items": []}).status_code == 401


def test_the_route_is_documented(server):
    with httpx.Client(base_url=server.url) as http:
        operation = http.get("/openapi.json").json()["paths"]["/v1/observations"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/BulkAppendRequest"
    }
    assert "expected_seq" in operation["description"]
