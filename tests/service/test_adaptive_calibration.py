"""Adaptive calibration through the HTTP API: a session's bands find their coverage on an asset unlike training's."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from data import sources
from models.calibration import AdaptiveConfig, AdaptiveOffsets
from models.checkpoint import make_checkpoint
from service.http.app import create_app
from tests.factories import tiny_config
from tests.service.conftest import MakeSettings
from training.calibration import rescaled_prices
from training.config import TrainConfig
from training.dataset import TrainingData
from training.pipeline import fit
from training.registry import Registry

HISTORY = 100
STREAMED = 750
LAST = 250


@pytest.fixture(scope="module")
def wild_closes() -> list[float]:
    """IBM with every log return multiplied by 3: a wilder asset than any the model was trained on."""
    prices = rescaled_prices(sources.bundled(["IBM"]), 3.0)
    return [float(c) for c in prices["close"].iloc[-(HISTORY + STREAMED) :]]


@pytest.fixture(scope="module")
def trained_registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """A globally scaled latent champion trained on the bundled prices as they are, with no conformal offsets."""
    data = TrainingData.prepare(sources.bundled(["IBM", "MSFT"]), ("returns",), 3)
    trained = fit(tiny_config(), data, TrainConfig(epochs=2, streams=4, threads=1, progress=False))
    registry = Registry(tmp_path_factory.mktemp("artifacts"))
    registry.promote(registry.register(make_checkpoint(trained.model, data.scaler, {"val_loss": 1.0})).version)
    return registry


@pytest.fixture
def app_client(trained_registry: Registry, make_settings: MakeSettings) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(artifacts=trained_registry.root))) as client:
        yield client


def stream(client: TestClient, closes: list[float], **opening: Any) -> tuple[str, list[bool]]:
    """Open a session on the first closes, post the rest one at a time; whether each 10-90% band held the next day."""
    opened = client.post("/v1/sessions", json={"mode": "latent", "history": closes[:HISTORY], **opening}).json()
    session_id, forecast, inside = opened["session_id"], opened["forecast"], []
    for seq in range(HISTORY, len(closes)):
        outcome = math.log(closes[seq] / closes[seq - 1])
        low, _, high = forecast["log_return"][0]
        inside.append(low <= outcome <= high)
        reply = client.post(f"/v1/sessions/{session_id}/observations", json={"seq": seq, "observations": [closes[seq]]})
        assert reply.status_code == 200, reply.text
        forecast = reply.json()["forecast"]
    return session_id, inside


def test_adaptive_offsets_bring_a_too_narrow_band_to_its_coverage(app_client: TestClient, wild_closes):
    _, plain = stream(app_client, wild_closes)
    session_id, adaptive = stream(app_client, wild_closes, calibration="adaptive")
    assert np.mean(plain[-LAST:]) < 0.7  # the model's own bands are far too narrow here
    assert 0.75 <= np.mean(adaptive[-LAST:]) <= 0.85
    offsets = app_client.get(f"/v1/sessions/{session_id}").json()["adaptive_offsets"]
    assert offsets[0][-1] > 0 > offsets[0][0]  # the band widened at both ends

    last = len(wild_closes) - 1
    before = app_client.get(f"/v1/sessions/{session_id}").json()
    retried = app_client.post(
        f"/v1/sessions/{session_id}/observations", json={"seq": last, "observations": [wild_closes[last]]}
    )
    after = app_client.get(f"/v1/sessions/{session_id}").json()
    assert after["adaptive_offsets"] == before["adaptive_offsets"] == offsets
    assert retried.json()["forecast"] == before["forecast"]
    assert after["next_seq"] == before["next_seq"] == len(wild_closes)


def test_a_session_without_adaptive_calibration_shows_no_offsets(app_client: TestClient, wild_closes):
    opened = app_client.post("/v1/sessions", json={"history": wild_closes[:HISTORY]}).json()
    assert app_client.get(f"/v1/sessions/{opened['session_id']}").json()["adaptive_offsets"] is None
    refused = app_client.post("/v1/sessions", json={"history": wild_closes[:HISTORY], "calibration": "sometimes"})
    assert refused.status_code == 422


def test_a_fresh_adaptive_session_adapts_from_its_first_outcome_as_the_offline_replay_does(
    app_client: TestClient, wild_closes
):
    closes = wild_closes[:40]
    opened = app_client.post("/v1/sessions", json={"history": closes[:5], "calibration": "adaptive"}).json()
    session_id, issued = opened["session_id"], [opened["forecast"]["log_return"]]
    for seq in range(5, len(closes)):
        body = {"seq": seq, "observations": [closes[seq]]}
        reply = app_client.post(f"/v1/sessions/{session_id}/observations", json=body)
        issued.append(reply.json()["forecast"]["log_return"])
    served = np.array(app_client.get(f"/v1/sessions/{session_id}").json()["adaptive_offsets"])
    # the same arithmetic offline, on the forecasts as issued (offsets included)
    config, levels = AdaptiveConfig(), np.array([0.1, 0.5, 0.9])
    offline = AdaptiveOffsets.zeros(3, 3).issue(4, closes[4], np.array(issued[0]))
    steady = AdaptiveOffsets(np.zeros((3, 3)), offline.pending)  # as offsets stored before outcomes were counted
    for seq in range(5, len(closes)):
        offline = offline.observe(seq, [closes[seq]], levels, config.rate, config.first_rate)
        offline = offline.issue(seq, closes[seq], np.array(issued[seq - 4]))
        steady = steady.observe(seq, [closes[seq]], levels, config.rate, config.first_rate)
        steady = steady.issue(seq, closes[seq], np.array(issued[seq - 4]))
    np.testing.assert_allclose(served, offline.offsets, rtol=1e-9, atol=1e-12)
    assert offline.outcomes == (35, 34, 33)
    assert np.abs(offline.offsets - steady.offsets).max() > 0.01  # the first outcomes stepped further
