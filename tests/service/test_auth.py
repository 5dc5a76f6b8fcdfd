"""API keys: every /v1 route needs one, sessions belong to their key, admin routes to the admin key."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from latentcast.errors import AuthError
from service.http.app import create_app
from service.http.auth import KeyRing, owner_of
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
        ("GET", "/v1/models/promotions"),
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


@pytest.mark.parametrize("url", ["/v1/forecast", "/v1/sessions", "/v1/sessions/abc/observations"])
def test_a_caller_without_a_key_is_refused_before_its_body_is_validated(keyed: TestClient, url):
    response = keyed.post(url, json={"seq": -1, "observations": [], "mode": "x"})
    assert response.status_code == 401


def test_a_caller_without_a_key_learns_nothing_of_its_append_body(keyed: TestClient):
    # the other routes' bodies are parsed by FastAPI before the key is checked: not JSON is a 422
    for content in (b"{not json", b"\xe6\x00", b""):
        response = keyed.post(
            "/v1/sessions/abc/observations", content=content, headers={"content-type": "application/json"}
        )
        assert response.status_code == 401, content


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


@pytest.fixture(params=["memory", "redis"])
def keyed_on(request, make_settings: MakeSettings) -> Iterator[TestClient]:
    """An app with keys, on each store."""
    values: dict[str, Any] = {"api_keys": (ALICE, BOB), "admin_key": ADMIN}
    if request.param == "redis":
        values |= {"store": "redis", "redis_url": request.getfixturevalue("redis_server")}
        values["redis_prefix"] = request.getfixturevalue("redis_prefix")
    with TestClient(create_app(make_settings(**values))) as client:
        yield client


def test_another_key_can_neither_read_feed_migrate_nor_delete_a_session(keyed_on: TestClient, closes, registry):
    client = keyed_on
    opened = client.post("/v1/sessions", json={"history": closes[:5]}, headers=as_(ALICE)).json()
    url = f"/v1/sessions/{opened['session_id']}"
    alice_batch = {"seq": 5, "observations": closes[5:7]}
    applied = client.post(f"{url}/observations", json=alice_batch, headers=as_(ALICE)).json()
    before = client.get(url, headers=as_(ALICE)).json()
    other_version = next(v.version for v in registry.versions("latent") if v.version != before["model"]["version"])
    for key in (BOB, ADMIN):  # the admin key is a key like another for sessions
        attempts = [
            client.get(url, headers=as_(key)),
            # the very batch Alice sent: its stored reply (her forecast) must not be given to another key
            client.post(f"{url}/observations", json=alice_batch, headers=as_(key)),
            client.post(f"{url}/observations", json={"seq": 7, "observations": [closes[7]]}, headers=as_(key)),
            client.post(f"{url}/migrate", json={"version": other_version}, headers=as_(key)),
            client.delete(url, headers=as_(key)),
        ]
        for response in attempts:
            assert response.status_code == 404 and response.json()["error"]["code"] == "not_found", response.text
            assert str(applied["forecast"]["price"][0][0]) not in response.text
    assert client.get(url, headers=as_(ALICE)).json() == before  # not fed, not migrated, not deleted


def test_keys_are_compared_in_constant_time_with_every_configured_key(monkeypatch):
    compared: list[tuple[bytes, bytes]] = []

    def compare_digest(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return a == b

    monkeypatch.setattr(hmac, "compare_digest", compare_digest)
    ring = KeyRing((ALICE, BOB, "carol-key-0123456789"), ADMIN)
    for key, admin in ((ALICE, False), ("carol-key-0123456789", False), (ADMIN, True)):
        compared.clear()
        assert ring.caller(key).admin is admin
        # the admin key and all three client keys, whichever matched, each as a 32-byte digest
        assert len(compared) == 4 and all(len(a) == len(b) == 32 for a, b in compared)
    compared.clear()
    with pytest.raises(AuthError):
        ring.caller("x" * 500)
    assert len(compared) == 4 and all(len(a) == 32 for a, _ in compared)


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
