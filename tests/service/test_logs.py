"""The service's log (uvicorn's access log included) holds neither API keys nor observation values."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from service.config import Settings
from service.http.logs import SessionIdFilter
from tests.support.processes import ServiceProcess
from training.registry import Registry

ALICE, BOB, ADMIN = "alice-log-key-0123456789", "bob-log-key-0123456789ab", "admin-log-key-0123456789"
WRONG = "not-a-known-key-0123456789"
# prices that appear nowhere else, so that finding one in the log can only mean it was logged
PRICES = [7345.678912 + 0.731113 * i for i in range(40)]


@pytest.mark.slow
@pytest.mark.parametrize("level", ["info", "debug"])
def test_the_log_holds_no_key_and_no_observation(registry: Registry, tmp_path: Path, level: str):
    env = {
        "LATENTCAST_ARTIFACTS": str(registry.root),
        "LATENTCAST_REGISTRY_POLL_SECONDS": "0",
        "LATENTCAST_LOG_LEVEL": level,  # info keeps uvicorn's access log on
        "LATENTCAST_API_KEYS": f"{ALICE},{BOB}",
        "LATENTCAST_ADMIN_KEY": ADMIN,
    }
    log = tmp_path / "serve.log"
    with ServiceProcess(env, log) as server, httpx.Client(base_url=server.url) as http:
        alice, bob = {"X-API-Key": ALICE}, {"X-API-Key": BOB}
        opened = http.post("/v1/sessions", json={"history": PRICES[:10], "ticker": "SECRETCO"}, headers=alice)
        url = f"/v1/sessions/{opened.json()['session_id']}"
        batch = {"seq": 10, "observations": [{"close": p, "high": p + 1, "low": p - 1} for p in PRICES[10:15]]}
        statuses = [
            opened.status_code,
            http.post(f"{url}/observations", json=batch, headers=alice).status_code,
            http.post(f"{url}/observations", json=batch, headers=alice).status_code,  # a retry
            http.post(
                f"{url}/observations", json={"seq": 20, "observations": PRICES[20:21]}, headers=alice
            ).status_code,
            http.post(
                f"{url}/observations", json={"seq": 15, "observations": [-PRICES[15]]}, headers=alice
            ).status_code,
            http.post(f"{url}/observations", json={"seq": 15, "observations": PRICES[15:16]}, headers=bob).status_code,
            http.post("/v1/forecast", json={"observations": PRICES}, headers={"X-API-Key": WRONG}).status_code,
            http.post("/v1/forecast", json={"observations": PRICES}).status_code,
            http.post("/v1/forecast", json={"observations": PRICES}, headers=bob).status_code,
            http.post("/v1/models/reload", headers=bob).status_code,
            http.post("/v1/models/reload", headers={"X-API-Key": ADMIN}).status_code,
            http.post(f"{url}/migrate", headers=alice).status_code,
            http.delete(url, headers=alice).status_code,
            http.get("/v1/models", params={"api_key": ALICE}).status_code,  # a key where none is read
            http.get(f"/healthz?{BOB}").status_code,
        ]
        assert statuses == [201, 200, 200, 409, 422, 404, 401, 401, 200, 403, 200, 200, 204, 401, 200]
    text = log.read_text()
    assert '"POST /v1/sessions HTTP/1.1" 201' in text  # the access log was on and captured
    # without keys a session id is all it takes to use the session: the log shows none
    assert opened.json()["session_id"] not in text
    assert '"POST /v1/sessions/<id>/observations HTTP/1.1" 200' in text
    assert '"GET /v1/models?<redacted> HTTP/1.1" 401' in text and '"GET /healthz?<redacted> HTTP/1.1" 200' in text
    for secret in (ALICE, BOB, ADMIN, WRONG, "SECRETCO"):
        assert secret not in text
    for price in PRICES:
        assert repr(price) not in text and f"{price:.2f}" not in text


def test_the_log_level_cannot_be_trace():
    # uvicorn's trace level logs every ASGI message, the headers (and so the API key) included
    with pytest.raises(ValidationError):
        Settings(log_level="trace")  # type: ignore[arg-type]


def test_the_filter_replaces_only_a_session_id_and_a_query():
    def shown(path: str) -> str:
        record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d', None, None)
        record.args = ("127.0.0.1:5000", "POST", path, "1.1", 200)
        assert SessionIdFilter().filter(record)
        return record.getMessage()

    assert (
        shown("/v1/sessions/AbC-_9x/observations")
        == '127.0.0.1:5000 - "POST /v1/sessions/<id>/observations HTTP/1.1" 200'
    )
    assert shown("/v1/sessions/AbC?x=1").endswith('"POST /v1/sessions/<id>?<redacted> HTTP/1.1" 200')
    assert shown("/v1/forecast?api_key=k&b=2").endswith('"POST /v1/forecast?<redacted> HTTP/1.1" 200')
    assert shown("/v1/sessions") == '127.0.0.1:5000 - "POST /v1/sessions HTTP/1.1" 200'
    assert shown("/v1/forecast").endswith('"POST /v1/forecast HTTP/1.1" 200')
