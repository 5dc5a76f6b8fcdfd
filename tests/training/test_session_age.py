"""The session-age report: its offline sessions are what the service answers a fresh session, forecast by forecast."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from data import sources
from data.features import build_series, fit_scaler, split_dates
from models.calibration import YoungOffsets, apply_offsets
from models.checkpoint import make_checkpoint
from models.forecaster import Forecaster
from models.predictor import Predictor
from service.config import Settings
from service.http.app import create_app
from tests.factories import tiny_config
from training.evaluate import SpanForecasts, session_outputs
from training.registry import Registry
from training.session_age import AgeConfig, age_scores

ORIGIN = 304  # the session opens after this row of IBM's bundled prices
HISTORY = 5
STREAMED = 25


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Registry, Predictor]:
    config = tiny_config(scaling="volatility")
    series = build_series(sources.bundled(), ("returns",), config.horizon)
    scaler = fit_scaler(series, split_dates(series), ("returns",))
    torch.manual_seed(3)
    rng = np.random.default_rng(3)
    offsets = rng.normal(0, 0.2, (config.horizon, len(config.quantiles)))
    young = YoungOffsets((1, 5, 9, 17), rng.normal(0, 0.3, (3, config.horizon, len(config.quantiles))))
    checkpoint = make_checkpoint(Forecaster(config), scaler, {"val_loss": 1.0}, {"source": "bundled"}, offsets, young)
    registry = Registry(tmp_path_factory.mktemp("artifacts"))
    registry.promote(registry.register(checkpoint).version)
    return registry, Predictor.from_checkpoint(checkpoint)


def test_a_fresh_rest_session_forecasts_what_the_report_scores(served):
    registry, predictor = served
    [series] = build_series(sources.bundled(["IBM"]), ("returns",), predictor.config.horizon)
    closes = series.close[ORIGIN - HISTORY + 1 : ORIGIN + STREAMED + 1].tolist()
    settings = Settings(artifacts=registry.root, registry_poll_seconds=0)
    with TestClient(create_app(settings)) as client:
        opened = client.post("/v1/sessions", json={"mode": "latent", "history": closes[:HISTORY]}).json()
        served_forecasts = [opened["forecast"]["log_return"]]
        for i, close in enumerate(closes[HISTORY:], start=HISTORY):
            reply = client.post(
                f"/v1/sessions/{opened['session_id']}/observations", json={"seq": i, "observations": [close]}
            ).json()
            served_forecasts.append(reply["forecast"]["log_return"])
    raw = session_outputs(predictor.model, predictor.scaler, series, ORIGIN, HISTORY)
    assert predictor.young is not None
    seen = np.arange(HISTORY - 1, HISTORY - 1 + len(raw))  # returns read before each forecast
    offline = apply_offsets(raw, predictor.young.at(seen, predictor.offsets))
    assert not np.allclose(offline[:13], apply_offsets(raw, predictor.offsets)[:13])  # young offsets apply, then
    np.testing.assert_allclose(offline[13:], apply_offsets(raw, predictor.offsets)[13:])  # from 17 returns on not
    assert len(served_forecasts) == STREAMED + 1
    np.testing.assert_allclose(np.array(served_forecasts), offline[: STREAMED + 1], rtol=1e-4, atol=1e-7)


def test_ages_fall_in_their_buckets_and_each_is_scored_against_the_same_days_warmed():
    levels = [0.1, 0.5, 0.9]
    ages = np.arange(1, 71)
    actual = np.zeros((70, 1))
    young = np.tile([-1.0, 0.0, 1.0], (70, 1, 1))
    young[:5] = [-1.0, 0.5, 2.0]  # forecasts 1-5: wider, and 0 still inside
    young[5:20] = [0.5, 1.0, 2.0]  # forecasts 6-20 miss: 0 is below the band
    warm = np.tile([-1.0, 0.0, 1.0], (70, 1, 1))
    span = SpanForecasts("X", ages, np.ones(70), actual, young[:, :, 1], young)
    warmed = SpanForecasts("X", ages, np.ones(70), actual, warm[:, :, 1], warm)
    scores = age_scores({"conformal": [(span, warmed, ages)]}, levels, (1,), AgeConfig())["conformal"]["h1"]
    assert {b: s["n"] for b, s in scores.items()} == {"1-5": 5, "6-20": 15, "21-60": 40, "61+": 10}
    assert [s["coverage"] for s in scores.values()] == [1.0, 0.0, 1.0, 1.0]
    assert [s["warmed_coverage"] for s in scores.values()] == [1.0, 1.0, 1.0, 1.0]
    assert scores["1-5"]["width_ratio"] == pytest.approx(1.5) and scores["21-60"]["width_ratio"] == 1.0
    assert scores["21-60"]["pinball"] == scores["21-60"]["warmed_pinball"]
