"""Every 4xx the API gives: its status, code and exact message, in the one error shape."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.http.app import create_app
from tests.factories import tiny_checkpoint
from tests.service.conftest import MakeSettings
from training.registry import Registry

JSON = {"content-type": "application/json"}


def error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    return body["error"]


@pytest.fixture
def session(client: TestClient, closes) -> str:
    session_id: str = client.post("/v1/sessions", json={"history": closes[:10]}).json()["session_id"]
    return session_id


def test_an_unknown_session_is_404(client: TestClient):
    for response in (
        client.get("/v1/sessions/unknownsessionid"),
        client.post("/v1/sessions/unknownsessionid/observations", json={"seq": 0, "observations": [1.0]}),
        client.delete("/v1/sessions/unknownsessionid"),
    ):
        assert error(response, 404) == {
            "code": "not_found",
            "message": "no session 'unknownsessionid': it does not exist, has expired or belongs to another key",
        }


@pytest.mark.parametrize(
    ("seq", "observations", "message", "reason"),
    [
        (12, [3.0], "seq 12 leaves a gap: the session expects seq 10", "gap"),
        (9, [3.0, 4.0], "observation 9 differs from the one already applied; the session expects seq 10", "conflict"),
    ],
)
def test_a_gap_or_a_conflict_is_409_and_changes_nothing(
    client: TestClient, session: str, seq, observations, message, reason
):
    before = client.get(f"/v1/sessions/{session}").json()
    response = client.post(f"/v1/sessions/{session}/observations", json={"seq": seq, "observations": observations})
    assert error(response, 409) == {"code": "conflict", "message": message, "expected_seq": 10, "reason": reason}
    assert client.get(f"/v1/sessions/{session}").json() == before


@pytest.mark.parametrize(
    ("raw", "message", "seq"),
    [
        ("[101.0, NaN]", "observation 11: close is nan; values must be finite", 11),
        ("[101.0, 102.0, Infinity]", "observation 12: close is inf; values must be finite", 12),
        ("[-Infinity]", "observation 10: close is -inf; values must be finite", 10),
        ("[0]", "observation 10: close is 0.0; prices must be positive", 10),
        ('[{"close": -3.5}]', "observation 10: close is -3.5; prices must be positive", 10),
    ],
)
def test_non_finite_or_non_positive_prices_are_422_and_nothing_is_applied(
    client: TestClient, session: str, raw, message, seq
):
    before = client.get(f"/v1/sessions/{session}").json()
    body = '{"seq": 10, "observations": ' + raw + "}"
    response = client.post(f"/v1/sessions/{session}/observations", content=body, headers=JSON)
    assert error(response, 422) == {"code": "invalid_data", "message": message, "seq": seq}
    assert client.get(f"/v1/sessions/{session}").json() == before


def test_bad_values_in_a_stateless_forecast_or_a_history_are_422(client: TestClient, registry: Registry):
    response = client.post("/v1/forecast", content='{"observations": [100, 101, NaN]}', headers=JSON)
    assert error(response, 422)["message"] == "observation 2: close is nan; values must be finite"
    response = client.post("/v1/sessions", json={"history": [100, -1]})
    assert error(response, 422)["message"] == "observation 1: close is -1.0; prices must be positive"
    response = client.post("/v1/forecast", json={"observations": [100.0]})
    assert error(response, 422) == {
        "code": "invalid_data",
        "message": f"1 observation gives no forecast: {registry.champion('latent')} needs at least 2",
        "needed": 2,
    }


@pytest.mark.parametrize(
    ("url", "body", "message"),
    [
        (
            "/v1/forecast",
            {"observations": []},
            "observations: List should have at least 1 item after validation, not 0",
        ),
        ("/v1/forecast", {}, "observations: Field required"),
        (
            "/v1/forecast",
            {"observations": ["abc"]},
            "observations[0]: an observation is a number (a close price) or an object with a close",
        ),
        (
            "/v1/forecast",
            {"observations": [True]},
            "observations[0]: an observation is a number (a close price) or an object with a close",
        ),
        ("/v1/forecast", {"observations": [{"open": 1.0}]}, "observations[0].close: Field required"),
        (
            "/v1/forecast",
            {"observations": [{"close": 1.0, "price": 2}]},
            "observations[0].price: Extra inputs are not permitted",
        ),
        ("/v1/forecast", {"mode": "var", "observations": [1.0]}, "mode: Input should be 'ar' or 'latent'"),
        (
            "/v1/forecast",
            {"mode": "ar", "version": "ar-x", "observations": [1.0]},
            "body: give a mode or a version, not both",
        ),
        ("/v1/forecast", {"observations": [{"close": True}]}, "observations[0].close: Input should be a valid number"),
        (
            "/v1/forecast",
            {"observations": [{"close": "101.5"}]},
            "observations[0].close: Input should be a valid number",
        ),
        (
            "/v1/forecast",
            {"observations": [{"close": 1.0, "open": True}]},
            "observations[0].open: Input should be a valid number",
        ),
        ("/v1/sessions", {"ticker": 7}, "ticker: Input should be a valid string"),
        ("/v1/sessions/SESSION/observations", {"seq": True, "observations": [1.0]}, "seq: seq must be an integer"),
        ("/v1/sessions/SESSION/observations", {"seq": "10", "observations": [1.0]}, "seq: seq must be an integer"),
        (
            "/v1/sessions/SESSION/observations",
            {"seq": 10.5, "observations": [1.0]},
            "seq: Input should be a valid integer, got a number with a fractional part",
        ),
        ("/v1/sessions/SESSION/observations", {"observations": [1.0]}, "seq: Field required"),
        (
            "/v1/sessions/SESSION/observations",
            {"seq": -1, "observations": [1.0]},
            "seq: Input should be greater than or equal to 0",
        ),
        (
            "/v1/sessions/SESSION/observations",
            {"seq": 2**63, "observations": [1.0]},
            "seq: Input should be less than or equal to 9223372036854775807",
        ),
        (
            "/v1/sessions/SESSION/observations",
            {"seq": 10, "observations": []},
            "observations: List should have at least 1 item after validation, not 0",
        ),
    ],
)
def test_malformed_requests_are_422_naming_the_field(client: TestClient, session: str, url, body, message):
    response = client.post(url.replace("SESSION", session), json=body)
    got = error(response, 422)
    assert got["code"] == "invalid_request"
    assert got["message"] == message
    assert got["errors"][0]["field"] == message.split(":")[0]


@pytest.mark.parametrize("url", ["/v1/forecast", "/v1/sessions/SESSION/observations"])
def test_a_body_that_is_not_json_is_422(client: TestClient, session: str, url):
    response = client.post(url.replace("SESSION", session), content="{observations", headers=JSON)
    got = error(response, 422)
    assert got["code"] == "invalid_request"
    assert got["message"] == "body: JSON decode error"


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"", JSON),
        (b"[1.0]", JSON),
        (b"null", JSON),
        (b"{seq", {"content-type": "application/vnd.api+json"}),
        (b"\xe6\x00", {"content-type": "application/json; charset=utf-8"}),
    ],
)
def test_the_append_route_refuses_a_malformed_body_as_the_other_routes_do(
    client: TestClient, session: str, content: bytes, headers: dict[str, str]
):
    # the append route reads its body itself (service/http/routes/lean.py); a stateless forecast's
    # body is a FastAPI body parameter: a body wrong as a whole gets the same answer from both
    expected = client.post("/v1/forecast", content=content, headers=headers)
    got = client.post(f"/v1/sessions/{session}/observations", content=content, headers=headers)
    assert (got.status_code, got.json()) == (expected.status_code, expected.json())
    assert got.status_code == 422


@pytest.mark.parametrize("url", ["/v1/forecast", "/v1/sessions", "/v1/sessions/SESSION/observations"])
@pytest.mark.parametrize(("headers", "shown"), [({"content-type": "text/plain"}, "text/plain"), ({}, "none")])
def test_a_json_body_not_sent_as_json_is_415(client: TestClient, session: str, url, headers, shown):
    response = client.post(
        url.replace("SESSION", session), content=b'{"seq": 0, "observations": [1.0]}', headers=headers
    )
    assert error(response, 415) == {
        "code": "unsupported_media_type",
        "message": f"request bodies are JSON: send Content-Type application/json, not {shown}",
    }


@pytest.mark.parametrize("url", ["/v1/forecast", "/v1/sessions", "/v1/sessions/SESSION/observations"])
def test_a_json_body_that_is_not_utf8_is_422_like_any_malformed_body(client: TestClient, session: str, url):
    # found by the schema fuzzer: FastAPI answered these 400, a status the routes do not document
    response = client.post(url.replace("SESSION", session), content=b"\xe6\x00\xf7\x80E", headers=JSON)
    assert error(response, 422) == {
        "code": "invalid_request",
        "message": "body: JSON text must be UTF-8",
        "errors": [{"field": "body", "message": "JSON text must be UTF-8"}],
    }


def test_a_seq_written_as_a_whole_float_is_the_integer(client: TestClient, session: str, closes):
    # found by the schema fuzzer: JSON Schema counts 10.0 as an integer, strict validation did not
    response = client.post(f"/v1/sessions/{session}/observations", json={"seq": 10.0, "observations": [closes[10]]})
    assert response.status_code == 200 and response.json()["next_seq"] == 11


@pytest.mark.parametrize(
    ("observation", "message"),
    [
        (1e16, "observation 10: close is 1e+16; prices must be at most 1e+15"),
        ({"close": 101.0, "high": 2e15}, "observation 10: high is 2000000000000000.0; prices must be at most 1e+15"),
        ({"close": 101.0, "volume": -1}, "observation 10: volume is -1.0; volume must not be negative"),
        ({"close": 101.0, "open": 0}, "observation 10: open is 0.0; prices must be positive"),
        ({"close": 101.0, "high": 100.0, "low": 102.0}, "observation 10: high 100.0 is below low 102.0"),
        ({"close": 103.0, "high": 102.0, "low": 99.0}, "observation 10: close 103.0 is above high 102.0"),
        ({"close": 98.5, "high": 102.0, "low": 99.0}, "observation 10: close 98.5 is below low 99.0"),
        ({"close": 101.0, "open": 98.0, "low": 99.0}, "observation 10: open 98.0 is below low 99.0"),
        (5e-324, "observation 10: close is 5e-324; prices must be at least 1e-12"),
        ({"close": 101.0, "low": 1e-300}, "observation 10: low is 1e-300; prices must be at least 1e-12"),
    ],
)
def test_every_value_sent_is_checked_even_those_the_model_does_not_read(
    client: TestClient, session: str, observation, message
):
    # found by the schema fuzzer: a closes-only model took a negative volume or a price of 1e300
    # (whose forecast price overflowed to null in the reply); the schema now states the bounds
    response = client.post(f"/v1/sessions/{session}/observations", json={"seq": 10, "observations": [observation]})
    assert error(response, 422) == {"code": "invalid_data", "message": message, "seq": 10}


def test_extreme_but_valid_prices_give_a_finite_forecast(client: TestClient):
    # a ratio of 1e15 to 1e-12 is far out: its log return is clipped by the scaler, with no warning
    # (pytest turns warnings into errors, so a warning here would be a 500)
    response = client.post("/v1/forecast", json={"observations": [1e15, 1e-12, 1e15, 1e-12, 1e15]})
    assert response.status_code == 200, response.text
    forecast = response.json()["forecast"]
    assert all(value is not None for row in forecast["price"] + forecast["log_return"] for value in row)


def test_the_smallest_prices_keep_distinct_price_quantiles(client: TestClient, closes):
    # a subnormal close (5e-324) once gave one price for every quantile; the smallest accepted keeps them
    tiny = [1e-12 * c / closes[0] for c in closes[:40]]
    forecast = client.post("/v1/forecast", json={"observations": tiny}).json()["forecast"]
    for prices, returns in zip(forecast["price"], forecast["log_return"], strict=True):
        assert len(set(prices)) == len(prices) == len(set(returns))
        assert prices == sorted(prices) and all(p > 0 for p in prices)


def test_too_large_bodies_and_batches_are_413(make_settings: MakeSettings, closes):
    with TestClient(create_app(make_settings(max_body_bytes=2048, max_batch=3, max_history=50))) as client:
        response = client.post("/v1/forecast", json={"observations": closes[:300]})
        declared = len(response.request.content)
        assert error(response, 413) == {
            "code": "limit_exceeded",
            "message": f"request body is {declared} bytes; the limit is 2048 bytes (LATENTCAST_MAX_BODY_BYTES)",
            "limit": 2048,
        }
        chunked = client.post(
            "/v1/forecast", content=iter([b'{"observations": [', b"1.0, " * 500, b"1.0]}"]), headers=JSON
        )
        assert error(chunked, 413)["message"] == (
            "request body is more than 2048 bytes; the limit is 2048 bytes (LATENTCAST_MAX_BODY_BYTES)"
        )
        session = client.post("/v1/sessions", json={"history": closes[:5]}).json()["session_id"]
        response = client.post(f"/v1/sessions/{session}/observations", json={"seq": 5, "observations": closes[5:9]})
        assert error(response, 413) == {
            "code": "limit_exceeded",
            "message": "batch has 4 observations; the limit is 3 (LATENTCAST_MAX_BATCH)",
            "limit": 3,
        }
        for url, key in (("/v1/forecast", "observations"), ("/v1/sessions", "history")):
            response = client.post(url, json={key: closes[:51]})
            assert error(response, 413)["message"] == (
                f"{'observations' if key == 'observations' else 'history'} has 51 observations; "
                "the limit is 50 (LATENTCAST_MAX_HISTORY)"
            )


def test_unknown_versions_and_modes_without_a_champion_are_404(tmp_path, make_settings: MakeSettings):
    registry = Registry(tmp_path / "artifacts")
    registry.promote(registry.register(tiny_checkpoint("latent")).version)
    with TestClient(create_app(make_settings(artifacts=registry.root))) as client:
        response = client.post("/v1/sessions", json={"mode": "ar"})
        assert error(response, 404) == {
            "code": "not_found",
            "message": "no champion for mode 'ar': no ar model has been promoted yet",
        }
        response = client.post("/v1/forecast", json={"version": "latent-20200101T000000-abcdef", "observations": [1.0]})
        assert error(response, 404)["message"] == "no model version 'latent-20200101T000000-abcdef'"
        response = client.post("/v1/sessions", json={"version": "gpt"})
        assert error(response, 404)["message"] == (
            "no model version 'gpt' (versions look like latent-20260101T000000-a1b2c3)"
        )


def test_unknown_routes_and_methods_keep_their_status_in_the_error_shape(client: TestClient):
    assert error(client.get("/v2/forecast"), 404) == {"code": "not_found", "message": "Not Found"}
    assert error(client.get("/v1/forecast"), 405) == {"code": "method_not_allowed", "message": "Method Not Allowed"}


def test_only_the_first_validation_errors_are_listed(client: TestClient):
    response = client.post("/v1/forecast", json={"observations": ["x"] * 50})
    got = error(response, 422)
    assert got["message"] == (
        "observations[0]: an observation is a number (a close price) or an object with a close (and 49 more)"
    )
    assert [e["field"] for e in got["errors"]] == [f"observations[{i}]" for i in range(10)]


def test_an_unexpected_failure_is_a_500_without_details(make_settings: MakeSettings, monkeypatch, caplog):
    with TestClient(create_app(make_settings()), raise_server_exceptions=False) as client:
        forecasts = client.app.state.services.forecasts  # type: ignore[attr-defined]

        async def broken(*args: Any) -> None:
            raise RuntimeError("secret detail")

        monkeypatch.setattr(forecasts, "forecast", broken)
        response = client.post("/v1/forecast", json={"observations": [1.0, 2.0]})
    assert error(response, 500) == {"code": "internal", "message": "internal error; the server log has the details"}
    assert "secret detail" in caplog.text
