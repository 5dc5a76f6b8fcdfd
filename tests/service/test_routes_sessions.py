"""The session routes: open, append, read, delete, migrate; the reply shape of each."""

from __future__ import annotations

from fastapi.testclient import TestClient

from service.http.app import create_app
from tests.factories import tiny_checkpoint
from tests.service.conftest import MakeSettings
from training.registry import Registry


def test_a_session_from_open_to_delete(client: TestClient, registry: Registry, closes):
    opened = client.post("/v1/sessions", json={"mode": "latent", "history": closes[:5], "ticker": "IBM"})
    assert opened.status_code == 201
    body = opened.json()
    session_id = body["session_id"]
    assert set(body) == {"session_id", "model", "next_seq", "forecast"}
    assert body["model"] == {"mode": "latent", "version": registry.champion("latent")}
    assert body["next_seq"] == 5 and body["forecast"]["as_of_seq"] == 4

    posted = client.post(f"/v1/sessions/{session_id}/observations", json={"seq": 5, "observations": closes[5:7]})
    assert posted.status_code == 200
    assert posted.json()["next_seq"] == 7 and posted.json()["forecast"]["as_of_seq"] == 6
    retried = client.post(f"/v1/sessions/{session_id}/observations", json={"seq": 5, "observations": closes[5:7]})
    assert retried.json() == posted.json()

    info = client.get(f"/v1/sessions/{session_id}").json()
    assert {k: info[k] for k in ("session_id", "model", "next_seq", "forecast")} == posted.json()
    assert (info["ticker"], info["retained"]) == ("IBM", 7) and info["updated"] >= info["created"] > 0

    assert client.delete(f"/v1/sessions/{session_id}").status_code == 204
    assert client.get(f"/v1/sessions/{session_id}").status_code == 404


def test_a_session_without_enough_history_has_no_forecast_yet_and_says_what_it_needs(
    client: TestClient, registry: Registry, closes
):
    needed = registry.load(str(registry.champion("ar")))["config"]["window"] + 1  # closes before an ar forecast
    opened = client.post("/v1/sessions", json={"mode": "ar"}).json()
    assert (opened["next_seq"], opened["forecast"], opened["needs"]) == (0, None, needed)
    session = opened["session_id"]
    posted = client.post(f"/v1/sessions/{session}/observations", json={"seq": 0, "observations": closes[:5]})
    assert (posted.json()["forecast"], posted.json()["needs"]) == (None, needed - 5)
    assert client.get(f"/v1/sessions/{session}").json()["needs"] == needed - 5
    retried = client.post(f"/v1/sessions/{session}/observations", json={"seq": 0, "observations": closes[:5]})
    assert retried.json() == posted.json()  # a stored reply says it too
    bulk = client.post(
        "/v1/observations", json={"items": [{"session_id": session, "seq": 5, "observations": closes[5 : needed - 1]}]}
    ).json()["items"][0]
    assert bulk["status"] == 200 and (bulk["reply"]["forecast"], bulk["reply"]["needs"]) == (None, 1)
    fed = client.post(f"/v1/sessions/{session}/observations", json={"seq": needed - 1, "observations": [closes[0]]})
    assert fed.json()["forecast"]["as_of_seq"] == needed - 1 and "needs" not in fed.json()


def test_a_latent_session_needs_one_return(client: TestClient, closes):
    opened = client.post("/v1/sessions", json={"mode": "latent", "history": closes[:1]}).json()
    assert (opened["forecast"], opened["needs"]) == (None, 1)
    schema = client.get("/openapi.json").json()["components"]["schemas"]["SessionResponse"]["properties"]
    assert "only when forecast is null" in schema["needs"]["description"]


def test_migrate_moves_a_pinned_session_to_the_new_champion(tmp_path, make_settings: MakeSettings, closes):
    registry = Registry(tmp_path / "artifacts")
    old = registry.register(tiny_checkpoint("latent", seed=1)).version
    registry.promote(old)
    with TestClient(create_app(make_settings(artifacts=registry.root, admin_key="admin-key-0123456789"))) as client:
        admin = {"X-API-Key": "admin-key-0123456789"}
        session_id = client.post("/v1/sessions", json={"history": closes[:20]}, headers=admin).json()["session_id"]
        new = registry.register(tiny_checkpoint("latent", seed=4)).version
        registry.promote(new)
        reloaded = client.post("/v1/models/reload", headers=admin).json()
        assert reloaded == {"champions": {"latent": new}, "changed": {"latent": new}, "failed": {}}
        url = f"/v1/sessions/{session_id}"
        assert client.post(f"{url}/observations", json={"seq": 20, "observations": [closes[20]]}, headers=admin).json()[
            "model"
        ] == {"mode": "latent", "version": old}

        moved = client.post(f"{url}/migrate", headers=admin)
        assert moved.status_code == 200
        body = moved.json()
        assert body["model"] == {"mode": "latent", "version": new}
        assert body["previous_model"] == {"mode": "latent", "version": old}
        assert (body["replayed"], body["first_replayed_seq"], body["next_seq"]) == (21, 0, 21)
        stateless = client.post("/v1/forecast", json={"version": new, "observations": closes[:21]}, headers=admin)
        assert body["forecast"] == stateless.json()["forecast"]

        to_ar = client.post(f"{url}/migrate", json={"mode": "ar"}, headers=admin)
        assert to_ar.status_code == 404
        assert to_ar.json()["error"]["message"] == "no champion for mode 'ar': no ar model has been promoted yet"


def test_every_route_is_documented_with_examples(client: TestClient):
    schema = client.get("/openapi.json").json()
    operations = {(m.upper(), p): op for p, item in schema["paths"].items() for m, op in item.items()}
    assert set(operations) == {
        ("POST", "/v1/forecast"),
        ("POST", "/v1/observations"),
        ("POST", "/v1/sessions"),
        ("POST", "/v1/sessions/{session_id}/observations"),
        ("GET", "/v1/sessions/{session_id}"),
        ("DELETE", "/v1/sessions/{session_id}"),
        ("POST", "/v1/sessions/{session_id}/migrate"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/compare"),
        ("GET", "/v1/models/compare/plots"),
        ("GET", "/v1/models/compare/plots/{name}"),
        ("GET", "/v1/models/promotions"),
        ("POST", "/v1/models/reload"),
        ("GET", "/v1/models/live"),
        ("GET", "/v1/compare/live"),
        ("GET", "/v1/data/tickers"),
        ("GET", "/v1/data/prices"),
        ("POST", "/v1/retrain"),
        ("GET", "/v1/jobs"),
        ("GET", "/v1/jobs/{job_id}"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
    }
    for (method, path), operation in operations.items():
        assert operation.get("summary"), (method, path)
        if path.startswith("/v1"):
            assert operation["security"] == [{"APIKeyHeader": []}], (method, path)
            assert "401" in operation["responses"], (method, path)
    posts = (
        "/v1/forecast",
        "/v1/sessions",
        "/v1/sessions/{session_id}/observations",
        "/v1/sessions/{session_id}/migrate",
    )
    for path in posts:
        examples = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["examples"]
        assert len(examples) == (3 if path == "/v1/forecast" else 2)  # the forecast's third: many histories
    responses = ("SessionResponse", "SessionInfoResponse", "MigrationResponse", "ForecastResponse", "ModelsResponse")
    for name in (
        *responses,
        "ReloadResponse",
        "StatusResponse",
        "ErrorResponse",
        "LiveResponse",
        "CompareLiveResponse",
    ):
        assert schema["components"]["schemas"][name]["examples"], name
    conflict = schema["paths"]["/v1/sessions/{session_id}/observations"]["post"]["responses"]["409"]
    assert conflict["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}


def test_the_schema_states_the_rules_that_validation_enforces(client: TestClient):
    # each was found by the schema fuzzer: a request the schema allowed but the service refused
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    for name in ("ForecastRequest", "OpenSessionRequest", "MigrateRequest"):
        assert components[name]["not"] == {
            "required": ["mode", "version"],
            "properties": {"mode": {"type": "string"}, "version": {"type": "string"}},
        }
    close = components["ObservationIn"]["properties"]["close"]
    assert (close["minimum"], close["maximum"]) == (1e-12, 1e15)
    assert components["ObservationIn"]["properties"]["volume"]["minimum"] == 0
    [parameter] = schema["paths"]["/v1/sessions/{session_id}"]["get"]["parameters"]
    assert parameter["schema"]["pattern"] == "^[A-Za-z0-9_-]{1,64}$"


def test_a_session_id_of_any_shape_is_404(client: TestClient):
    for session_id in ("x" * 65, "a.b", "%00"):
        response = client.get(f"/v1/sessions/{session_id}")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
