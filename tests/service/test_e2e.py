"""End to end against real ``latentcast serve`` processes on free ports, over loopback HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from models.series import Observation
from tests.service.conftest import versions
from tests.support.processes import ServiceProcess
from training.registry import Registry

pytestmark = pytest.mark.slow  # not in `make check`: see the "slow" marker in pyproject.toml

STREAMED = 300


def env(registry: Registry, **values: str) -> dict[str, str]:
    return {
        "LATENTCAST_ARTIFACTS": str(registry.root),
        "LATENTCAST_REGISTRY_POLL_SECONDS": "0",
        "LATENTCAST_LOG_LEVEL": "warning",
        **{f"LATENTCAST_{k.upper()}": v for k, v in values.items()},
    }


def wire(obs: Observation) -> dict[str, Any]:
    return {"close": obs.close, "high": obs.high, "low": obs.low, "volume": obs.volume, "time": obs.time}


def assert_close(got: dict[str, Any], want: dict[str, Any], same_seq: bool = True) -> None:
    assert got["as_of_seq"] == want["as_of_seq"] or not same_seq
    np.testing.assert_allclose(got["log_return"], want["log_return"], atol=1e-4)
    np.testing.assert_allclose(got["price"], want["price"], rtol=1e-4)


def test_sessions_fed_one_request_at_a_time_equal_the_stateless_forecast(registry: Registry, bars, tmp_path: Path):
    bar_version = next(v for v in versions(registry, "latent") if v != registry.champion("latent"))
    choices = {"latent": {"mode": "latent"}, "ar": {"mode": "ar"}, "bars": {"version": bar_version}}
    with ServiceProcess(env(registry), tmp_path / "serve.log") as server, httpx.Client(base_url=server.url) as http:
        sessions = {
            name: http.post("/v1/sessions", json=choice).json()["session_id"] for name, choice in choices.items()
        }
        last: dict[str, Any] = {}
        for seq in range(STREAMED):
            for name, session_id in sessions.items():
                observation = wire(bars[seq]) if name == "bars" else bars[seq].close
                reply = http.post(
                    f"/v1/sessions/{session_id}/observations", json={"seq": seq, "observations": [observation]}
                )
                assert reply.status_code == 200, reply.text
                last[name] = reply.json()
        for name, choice in choices.items():
            history = [wire(b) if name == "bars" else b.close for b in bars[:STREAMED]]
            stateless = http.post("/v1/forecast", json={**choice, "observations": history}).json()
            assert last[name]["next_seq"] == STREAMED and last[name]["model"] == stateless["model"]
            assert_close(last[name]["forecast"], stateless["forecast"])
        assert http.get("/openapi.json").json()["info"]["title"] == "latentcast"
        assert 'route="/v1/sessions/{session_id}/observations",status="200"} 900.0' in http.get("/metrics").text
        window = http.post("/v1/forecast", json={"mode": "ar", "observations": [b.close for b in bars[289:300]]}).json()
        assert_close(last["ar"]["forecast"], window["forecast"], same_seq=False)  # seq counts from the window's start


def test_a_redis_session_continues_after_the_server_is_killed(
    registry: Registry, closes, redis_server: str, redis_prefix: str, tmp_path: Path
):
    settings = env(registry, store="redis", redis_url=redis_server, redis_prefix=redis_prefix)
    log = tmp_path / "serve.log"
    first = ServiceProcess(settings, log).start()
    try:
        with httpx.Client(base_url=first.url) as http:
            opened = http.post("/v1/sessions", json={"history": closes[:20]}).json()
            url = f"/v1/sessions/{opened['session_id']}"
            for seq in range(20, 120, 5):
                reply = http.post(f"{url}/observations", json={"seq": seq, "observations": closes[seq : seq + 5]})
                assert reply.status_code == 200
            last = reply.json()
    finally:
        first.kill()
    with ServiceProcess(settings, log) as second, httpx.Client(base_url=second.url) as http:
        assert http.get(url).json()["next_seq"] == 120
        retried = http.post(f"{url}/observations", json={"seq": 115, "observations": closes[115:120]})
        assert retried.json() == last  # the reply stored before the crash
        gap = http.post(f"{url}/observations", json={"seq": 121, "observations": [closes[121]]})
        assert gap.status_code == 409 and gap.json()["error"]["expected_seq"] == 120
        for seq in range(120, 200):
            reply = http.post(f"{url}/observations", json={"seq": seq, "observations": [closes[seq]]})
        final = reply.json()
    assert final["next_seq"] == 200 and final["model"] == opened["model"]
    offline = registry.predictor(opened["model"]["version"]).forecast_history(
        [Observation(close=c) for c in closes[:200]]
    )
    assert offline is not None
    assert_close(final["forecast"], offline.to_dict())
