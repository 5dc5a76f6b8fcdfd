"""POST /v1/forecast: a whole history in, quantiles of returns and prices out."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from models.series import Observation
from service.http.app import create_app
from tests.service.conftest import versions
from training.registry import Registry


def test_a_forecast_of_closes_is_the_champions_run_over_them(client: TestClient, registry: Registry, closes):
    response = client.post("/v1/forecast", json={"observations": closes[:60]})
    assert response.status_code == 200
    body = response.json()
    champion = registry.champion("latent")
    assert champion is not None
    assert body["model"] == {"mode": "latent", "version": champion}
    want = registry.predictor(champion).forecast_history([Observation(close=c) for c in closes[:60]])
    assert want is not None
    assert body["forecast"] == want.to_dict()
    assert body["forecast"]["as_of_seq"] == 59 and body["forecast"]["horizons"] == [1, 2, 3]
    price, log_return = np.array(body["forecast"]["price"]), np.array(body["forecast"]["log_return"])
    np.testing.assert_allclose(price, closes[59] * np.exp(log_return))


def test_an_ar_forecast_reads_only_its_window(client: TestClient, closes):
    whole = client.post("/v1/forecast", json={"mode": "ar", "observations": closes[:60]}).json()
    window = client.post("/v1/forecast", json={"mode": "ar", "observations": closes[49:60]}).json()
    assert whole["model"]["mode"] == "ar"
    np.testing.assert_allclose(whole["forecast"]["log_return"], window["forecast"]["log_return"], atol=1e-6)


def test_bars_go_to_a_version_that_reads_range_and_volume(client: TestClient, registry: Registry, bars):
    version = next(v for v in versions(registry, "latent") if v != registry.champion("latent"))
    payload = [{"close": b.close, "high": b.high, "low": b.low, "volume": b.volume, "time": b.time} for b in bars[:40]]
    body = client.post("/v1/forecast", json={"version": version, "observations": payload}).json()
    assert body["model"] == {"mode": "latent", "version": version}
    want = registry.predictor(version).forecast_history(bars[:40])
    assert want is not None and body["forecast"] == want.to_dict()

    closes_only = client.post("/v1/forecast", json={"version": version, "observations": [b.close for b in bars[:40]]})
    assert closes_only.status_code == 422
    assert closes_only.json()["error"] == {
        "code": "invalid_data",
        "message": "observation 0: high is missing; this model needs close, high, low, volume",
        "seq": 0,
    }


def test_many_histories_get_a_forecast_each_and_errors_of_their_own(client: TestClient, registry: Registry, closes):
    items = [
        {"observations": closes[:60]},
        {"mode": "ar", "observations": closes[10:40]},
        {"observations": closes[5:6]},  # too short for a forecast
        {"observations": [closes[0], -3.0]},
        {"version": "latent-no-such-version", "observations": closes[:10]},
        {"observations": closes[:60], "unknown": 1},
        {"observations": closes[20:80]},
    ]
    response = client.post("/v1/forecast", json={"items": items})
    assert response.status_code == 200
    got = response.json()["items"]
    assert [item["status"] for item in got] == [200, 200, 422, 422, 404, 422, 200]
    for i in (0, 1, 6):
        alone = client.post("/v1/forecast", json=items[i]).json()
        # run as one batch: the same forecast to float32 rounding
        assert got[i]["reply"]["model"] == alone["model"]
        np.testing.assert_allclose(
            got[i]["reply"]["forecast"]["log_return"], alone["forecast"]["log_return"], atol=1e-6
        )
    assert got[2]["error"]["code"] == "invalid_data" and "needs at least" in got[2]["error"]["message"]
    assert got[3]["error"]["seq"] == 1
    assert got[5]["error"]["message"] == "unknown: Extra inputs are not permitted"


def test_a_bulk_forecast_is_refused_whole_only_over_the_bound(make_settings):
    with TestClient(create_app(make_settings(max_bulk_items=2))) as client:
        response = client.post("/v1/forecast", json={"items": [{"observations": [1.0]}] * 3})
        assert response.status_code == 413
        assert response.json()["error"]["message"] == "3 items; the limit is 2 (LATENTCAST_MAX_BULK_ITEMS)"
        assert client.post("/v1/forecast", json={"items": []}).status_code == 422
