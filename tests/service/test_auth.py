"""API keys: every /v1 route needs one, sessions belong to their key, admin routes to the admin key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.auth import owner_of
from tests.service.conftest import MakeSettings

ALICE, BOB, ADMIN = "alice-key-0123456789", "bob-key-0123456789ab", "admin-key-0123456789"


@pytest.fixture
def keyed(make_settings: MakeSettings) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(api_keys=(ALICE, BOB), admin_key=ADMIN))) as client:
        yield client


def as_(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("POST", "/v1/forecast"),
        ("POST", "/v1/sessions"),
        ("GET", "/v1/sessions/abc"),
        ("DELETE", "/v1/sessions/abc"),
        ("POST", "/v1/sessions/abc/observations"),
        ("POST", "/v1/sessions/abc/migrate"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/compare"),
        ("POST", "/v1/models/reload"),
    ],
)
def test_every_v1_route_needs_a_known_key(keyed: TestClient, method, url):
    body = {"seq": 0, "observations": [1.0]}
    missing = keyed.request(method, url, json=body)
    assert missing.status_code == 401
    assert missing.json() == {
        "error": {"code": "unauthorized", "message": "missing API key: send it in the X-API-Key header"}
    }
    wrong = keyed.request(method, url, json=body, headers=as_("not-a-key-0123456789"))
    assert wrong.status_code == 401
    assert wrong.json() == {"error": {"code": "unauthorized", "message": "unknown API key"}}


def test_probes_and_metrics_need_no_key(keyed: TestClient):
    for url in ("/healthz", "/readyz", "/metrics"):
        assert keyed.get(url).status_code == 200


def test_a_session_is_visible_only_to_the_key_that_opened_it(keyed: TestClient, closes):
    opened = keyed.post("/v1/sessions", json={"history": closes[:5]}, headers=as_(ALICE))
    assert opened.status_code == 201
    session_id = opened.json()["session_id"]
    url = f"/v1/sessions/{session_id}"
    not_found = {
        "error": {
            "code": "not_found",
            "message": f"no session '{session_id}': it does not exist, has expired or belongs to another key",
        }
    }
    for response in (
        keyed.get(url, headers=as_(BOB)),
        keyed.post(f"{url}/observations", json={"seq": 5, "observations": [closes[5]]}, headers=as_(BOB)),
        keyed.post(f"{url}/migrate", headers=as_(BOB)),
        keyed.delete(url, headers=as_(BOB)),
        keyed.get(url, headers=as_(ADMIN)),  # the admin key is a key like another for sessions
    ):
        assert (response.status_code, response.json()) == (404, not_found)
    assert keyed.get(url, headers=as_(ALICE)).json()["next_seq"] == 5


def test_stores_hold_a_hash_of_the_key_never_the_key(keyed: TestClient):
    session_id = keyed.post("/v1/sessions", headers=as_(ALICE)).json()["session_id"]
    store = keyed.app.state.services.store  # type: ignore[attr-defined]
    record = keyed.portal.call(store.get, session_id)  # type: ignore[union-attr]
    assert record.owner == owner_of(ALICE) != ALICE and len(record.owner) == 32


def test_admin_routes_need_the_admin_key(keyed: TestClient):
    forbidden = keyed.post("/v1/models/reload", headers=as_(ALICE))
    assert forbidden.status_code == 403
    assert forbidden.json() == {"error": {"code": "forbidden", "message": "this route needs the admin key"}}
    assert keyed.post("/v1/models/reload", headers=as_(ADMIN)).status_code == 200


def test_without_keys_everything_is_open(client: TestClient):
    assert client.post("/v1/models/reload").status_code == 200
    assert client.post("/v1/sessions").status_code == 201


def test_session_ids_are_long_random_and_distinct(client: TestClient):
    ids = {client.post("/v1/sessions").json()["session_id"] for _ in range(20)}
    assert len(ids) == 20 and all(len(i) == 32 for i in ids)
