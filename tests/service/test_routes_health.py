"""Liveness, readiness (models loaded, store answering) and the Prometheus metrics."""

from __future__ import annotations

import gc
import logging
import re

import pytest
from fastapi.testclient import TestClient

from service.http.app import create_app
from tests.factories import tiny_checkpoint
from tests.service.conftest import MakeSettings
from tests.support.processes import free_port
from training.registry import Registry


def metric(text: str, line_start: str) -> float:
    found = re.search(rf"^{re.escape(line_start)} (\S+)$", text, re.MULTILINE)
    assert found, line_start
    return float(found.group(1))


def test_healthz_and_readyz(client: TestClient, registry):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {
        "status": "ready",
        "store": "memory",
        "champions": {"ar": registry.champion("ar"), "latent": registry.champion("latent")},
    }


def test_not_ready_without_a_champion(tmp_path, make_settings: MakeSettings):
    with TestClient(create_app(make_settings(artifacts=tmp_path / "empty"))) as client:
        assert client.get("/healthz").status_code == 200
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {
            "error": {
                "code": "unavailable",
                "message": "no model loaded: the registry has no champion yet",
            }
        }
        assert client.post("/v1/sessions").status_code == 404


def test_a_503_probe_is_no_error_in_the_log_only_a_change_of_readiness_is_a_line(
    tmp_path, make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
):
    registry = Registry(tmp_path / "late")
    caplog.set_level(logging.DEBUG, logger="service")
    with TestClient(create_app(make_settings(artifacts=registry.root))) as client:
        assert [client.get("/readyz").status_code for _ in range(3)] == [503, 503, 503]
        registry.promote(registry.register(tiny_checkpoint("latent", seed=1)).version)
        assert client.post("/v1/models/reload").status_code == 200
        assert [client.get("/readyz").status_code for _ in range(2)] == [200, 200]
    probes = [r for r in caplog.records if r.name == "service.http.routes.health"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    changes = [(r.levelname, r.getMessage()) for r in probes if r.levelno > logging.DEBUG]
    assert changes == [
        ("WARNING", "not ready: no model loaded: the registry has no champion yet"),
        ("INFO", "ready"),
    ]
    assert len(probes) == 5


def test_not_ready_when_redis_does_not_answer(make_settings: MakeSettings):
    port = free_port()
    settings = make_settings(store="redis", redis_url=f"redis://127.0.0.1:{port}/0", redis_timeout_seconds=0.5)
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "unavailable"
        assert error["message"] == "session store is unavailable: redis ConnectionError"
        opened = client.post("/v1/sessions")
        assert opened.status_code == 503 and opened.json()["error"]["code"] == "unavailable"
        assert client.get("/metrics").status_code == 200


def test_metrics_count_requests_sessions_steps_models_and_evictions(make_settings: MakeSettings, registry, closes):
    with TestClient(create_app(make_settings(max_sessions=2))) as client:
        ids = [client.post("/v1/sessions", json={"history": closes[:4]}).json()["session_id"] for _ in range(3)]
        client.post(f"/v1/sessions/{ids[2]}/observations", json={"seq": 4, "observations": closes[4:7]})
        client.post(f"/v1/sessions/{ids[2]}/observations", json={"seq": 4, "observations": closes[4:7]})  # a retry
        client.post(f"/v1/sessions/{ids[2]}/observations", json={"seq": 9, "observations": closes[9:10]})  # a gap
        text = client.get("/metrics").text
    route = 'route="/v1/sessions/{session_id}/observations"'
    assert metric(text, f'latentcast_http_requests_total{{method="POST",{route},status="200"}}') == 2
    assert metric(text, f'latentcast_http_requests_total{{method="POST",{route},status="409"}}') == 1
    assert metric(text, f'latentcast_http_request_duration_seconds_count{{method="POST",{route}}}') == 3
    assert metric(text, 'latentcast_http_requests_total{method="POST",route="/v1/sessions",status="201"}') == 3
    assert metric(text, "latentcast_sessions_open") == 2
    assert metric(text, 'latentcast_sessions_evicted_total{reason="capacity"}') == 1
    assert metric(text, 'latentcast_observations_applied_total{kind="open",mode="latent"}') == 12
    assert metric(text, 'latentcast_observations_applied_total{kind="append",mode="latent"}') == 3
    champion = registry.champion("latent")
    assert metric(text, f'latentcast_model_loaded{{champion="true",mode="latent",version="{champion}"}}') == 1
    assert metric(text, 'latentcast_model_reloads_total{result="changed"}') == 1


def test_two_apps_in_one_process_keep_their_own_metrics(make_settings: MakeSettings):
    with TestClient(create_app(make_settings())) as first, TestClient(create_app(make_settings())) as second:
        first.get("/healthz")
        first.get("/healthz")
        second.get("/healthz")
        line = 'latentcast_http_requests_total{method="GET",route="/healthz",status="200"}'
        assert metric(first.get("/metrics").text, line) == 2
        assert metric(second.get("/metrics").text, line) == 1


def test_made_up_methods_are_counted_as_one_series(make_settings: MakeSettings):
    with TestClient(create_app(make_settings())) as client:
        for method in ("BREW", "WHEN", "PROPFIND"):
            assert client.request(method, "/healthz").status_code == 405
        text = client.get("/metrics").text
    assert metric(text, 'latentcast_http_requests_total{method="OTHER",route="/healthz",status="405"}') == 3
    assert "BREW" not in text


def test_the_collector_is_tuned_while_the_app_serves_and_restored_after(make_settings: MakeSettings):
    before = gc.get_threshold(), gc.get_freeze_count()
    with TestClient(create_app(make_settings(gc_freeze=True, gc_threshold=12345))) as client:
        assert client.get("/healthz").status_code == 200
        assert gc.get_threshold()[0] == 12345
        assert gc.get_freeze_count() > before[1]  # the objects loaded by then are out of the collector's walks
    assert (gc.get_threshold(), gc.get_freeze_count()) == before
    with TestClient(create_app(make_settings(gc_freeze=False, gc_threshold=0))):
        assert (gc.get_threshold(), gc.get_freeze_count()) == before
