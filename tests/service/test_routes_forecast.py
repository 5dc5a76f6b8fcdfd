"""POST /v1/forecast: a whole history in, quantiles of returns and prices out."""

from __future__ import annotations

import numpy as np
from fastapi.testclient import TestClient

from models.predictor import Observation
from tests.service.conftest import versions
from training.registry import Registry


def test_a_forecast_of_closes_is_the_champions_run_over_them(client: TestClient, registry: Registry, closes):
    response = client.post("/v1/forecast", json={"observations": closes[:60]})
    assert response.status_code == 200
    body = response.json()
    champion = registry.champion("latent")
    assert champion is not None
    assert body["model"] == {"mode": "latent", "version": champion}
    want = registry.predictor(champion).run([Observation(close=c) for c in closes[:60]])
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
    want = registry.predictor(version).run(bars[:40])
    assert want is not None and body["forecast"] == want.to_dict()

    closes_only = client.post("/v1/forecast", json={"version": version, "observations": [b.close for b in bars[:40]]})
    assert closes_only.status_code == 422
    assert closes_only.json()["error"] == {
        "code": "invalid_data",
        "message": "observation 0: high is missing; this model needs close, high, low, volume",
        "seq": 0,
    }
