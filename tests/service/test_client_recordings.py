"""The replies the Python client's tests replay are the service's replies today; its errors' codes are the client's."""

from __future__ import annotations

import json
import math

import numpy
import pytest
from latentcast_client import errors as client_errors
from latentcast_client import protocol

from latentcast.errors import ForecastError
from tests.service.client_recordings import COMMAND, RECORDINGS, answered, same, serving, settings_of
from training.registry import Registry

NAMES = sorted(path.stem for path in RECORDINGS.glob("*.json"))


def test_there_are_recordings_of_http_errors_and_the_websocket():
    assert {"sessions", "errors", "auth", "stream", "replay", "applied"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_recorded_replies_are_what_the_service_answers(name: str, registry: Registry):
    recorded = json.loads((RECORDINGS / f"{name}.json").read_text())
    with serving(settings_of(recorded, registry)) as url:
        now = answered(recorded, url)
    differences = same(recorded, now)
    assert not differences, f"{name}.json is stale ({'; '.join(differences[:5])}): run {COMMAND}"


def test_a_changed_reply_is_found():
    recorded = {"http": [{"response": {"status": 200, "body": {"next_seq": 4, "price": [101.5, 102.25]}}}]}
    assert same(recorded, json.loads(json.dumps(recorded))) == []
    moved = json.loads(json.dumps(recorded))
    moved["http"][0]["response"]["body"]["next_seq"] = 5
    assert same(recorded, moved) == [".http[0].response.body.next_seq: 4"]
    moved["http"][0]["response"]["body"]["price"][1] = 102.26
    assert len(same(recorded, moved)) == 2
    assert same({"a": 1}, {"a": 1.0}) == [".a: 1"]


def _subclasses(cls: type[ForecastError]) -> list[type[ForecastError]]:
    return [cls, *(s for sub in cls.__subclasses__() for s in _subclasses(sub))]


def test_every_code_the_service_answers_has_its_class_in_the_client():
    codes = {cls.code for cls in _subclasses(ForecastError) if cls is not ForecastError}
    codes |= {"invalid_request", "internal"}  # service/http/errors.py: a body that does not validate; a fault
    assert codes <= set(client_errors.CODES), codes - set(client_errors.CODES)
    assert type(client_errors.api_error(429, {"code": "quota_exceeded", "message": "m"})) is client_errors.QuotaError
    assert isinstance(client_errors.api_error(429, {"code": "quota_exceeded"}), client_errors.LimitError)
    assert type(client_errors.api_error(418, {"code": "teapot", "message": "m"})) is client_errors.ApiError


def test_the_client_writes_with_orjson_what_the_standard_library_writes():
    assert protocol.orjson is not None  # installed beside the service: the client writes with it
    for body in (
        {"seq": 3, "observations": [101.25, {"close": 1e-300, "time": "2024-01-02"}], "ticker": "Ünïcode"},
        {"seq": 3, "observations": [101.25, math.nan, -math.inf]},  # orjson would write null: the service reads NaN
        {"history": [None]},
        {"observations": [numpy.float64(101.25), 2**70]},  # types orjson refuses
    ):
        text = protocol.dumps(body)
        assert json.dumps(json.loads(text), sort_keys=True) == json.dumps(body, sort_keys=True)
    assert protocol.dumps({"observations": [math.nan]}) == b'{"observations":[NaN]}'
