"""The one JSON reader: every body that does not parse, on every route and on the feed, is the documented 422."""

from __future__ import annotations

import sys

import pytest
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient

from service.http.json_reader import UNPARSABLE, parse_json

JSON = {"content-type": "application/json"}
# one digit past Python's limit on the digits of an int read from text (4,300 by default)
HUGE = "7" * (sys.get_int_max_str_digits() + 1)
INVALID = {
    "code": "invalid_request",
    "message": f"body: {UNPARSABLE}",
    "errors": [{"field": "body", "message": UNPARSABLE}],
}


def test_standard_json_and_the_float_literals_parse():
    assert parse_json(b'{"a": [1, 2.5, "x", null]}') == {"a": [1, 2.5, "x", None]}
    nan, inf, minus = parse_json("[NaN, Infinity, -Infinity]")
    assert nan != nan and inf == float("inf") and minus == float("-inf")


@pytest.mark.parametrize(
    ("raw", "message", "position"),
    [
        (HUGE.encode(), UNPARSABLE, 0),
        (b'{"seq": ' + HUGE.encode() + b"}", UNPARSABLE, 8),
        (b"[" * 100_000 + b"]" * 100_000, UNPARSABLE, None),
        (b'{"a": 1', UNPARSABLE, 7),
        (b'"\xff"', "JSON text must be UTF-8", None),
    ],
    ids=["a huge integer", "a huge seq", "deep nesting", "truncated", "not utf-8"],
)
def test_whatever_does_not_parse_is_json_invalid(raw: bytes, message: str, position: int | None):
    with pytest.raises(RequestValidationError) as caught:
        parse_json(raw)
    [error] = caught.value.errors()
    assert (error["type"], error["msg"]) == ("json_invalid", message)
    if position is not None:
        assert error["loc"] == ("body", position)


@pytest.fixture
def session(client: TestClient, closes: list[float]) -> str:
    session_id: str = client.post("/v1/sessions", json={"history": closes[:10]}).json()["session_id"]
    return session_id


def test_a_huge_integer_is_422_on_every_route(client: TestClient, session: str):
    bodies = {
        "/v1/forecast": '{"observations": [100.0, ' + HUGE + "]}",
        "/v1/sessions": '{"history": [' + HUGE + "]}",
        f"/v1/sessions/{session}/observations": '{"seq": ' + HUGE + ', "observations": [100.0]}',
        "/v1/observations": '{"items": [{"session_id": "' + session + '", "seq": 10, "observations": [' + HUGE + "]}]}",
        f"/v1/sessions/{session}/migrate": '{"version": ' + HUGE + "}",
    }
    for path, body in bodies.items():
        response = client.post(path, content=body, headers=JSON)
        assert response.status_code == 422, (path, response.text)
        assert response.json() == {"error": INVALID}, path
    # nothing was applied, and the connection's next request is served
    assert client.get(f"/v1/sessions/{session}").json()["next_seq"] == 10


def test_a_body_that_is_not_json_opens_no_session_and_is_422(client: TestClient):
    response = client.post("/v1/sessions", content=b'{"history": [1,', headers=JSON)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
    response = client.post("/v1/sessions", content=b'"\xff"', headers=JSON)
    assert response.status_code == 422
    assert response.json()["error"]["message"] == "body: JSON text must be UTF-8"


def test_no_body_still_opens_an_empty_session(client: TestClient):
    response = client.post("/v1/sessions")
    assert response.status_code == 201 and response.json()["next_seq"] == 0
