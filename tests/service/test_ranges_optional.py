"""One model for closes and bars: a range_or_returns champion answers sessions of either, through the app."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from data import sources
from data.features import build_series, without_ranges
from models.series import Observation
from service.http.app import create_app
from tests.factories import real_bars, tiny_checkpoint
from tests.service.conftest import MakeSettings
from training.evaluate import model_outputs
from training.registry import Registry

OPENED = 20  # observations a session opens with; the rest are appended one at a time (the kernel's path)
COUNT = 31


def bar(obs: Observation) -> dict[str, Any]:
    return {"close": obs.close, "high": obs.high, "low": obs.low}


@pytest.fixture
def mixed(tmp_path, make_settings: MakeSettings) -> Iterator[tuple[TestClient, Registry, str]]:
    registry = Registry(tmp_path / "artifacts")
    checkpoint = tiny_checkpoint(
        "latent", seed=3, n_features=2, scaling="volatility", variance_source="range_or_returns", range_ratio=1.5
    )
    version = registry.register(checkpoint).version
    registry.promote(version)
    with TestClient(create_app(make_settings(artifacts=registry.root))) as client:
        yield client, registry, version


def session(client: TestClient, observations: list[Any]) -> dict[str, Any]:
    """A session opened with the first ``OPENED`` observations, then fed the others one by one: its last reply."""
    opened = client.post("/v1/sessions", json={"mode": "latent", "history": observations[:OPENED]})
    assert opened.status_code == 201, opened.text
    reply, url = opened.json(), f"/v1/sessions/{opened.json()['session_id']}/observations"
    for seq in range(OPENED, len(observations)):
        posted = client.post(url, json={"seq": seq, "observations": [observations[seq]]})
        assert posted.status_code == 200, posted.text
        reply = posted.json()
    return reply


def test_one_model_answers_a_session_of_closes_and_one_of_bars(mixed):
    client, _, version = mixed
    bars = real_bars("IBM", COUNT)
    closes = session(client, [b.close for b in bars])
    barred = session(client, [bar(b) for b in bars])
    for reply in (closes, barred):
        assert reply["model"] == {"mode": "latent", "version": version}
        assert reply["forecast"]["as_of_seq"] == COUNT - 1
    # the bars' ranges were read: another forecast from the same closes
    assert not np.allclose(closes["forecast"]["log_return"], barred["forecast"]["log_return"], atol=1e-6)
    # and a session may mix them: bars, then closes, then bars
    mixed_in = [bar(b) if i % 3 else b.close for i, b in enumerate(bars)]
    assert session(client, mixed_in)["forecast"]["as_of_seq"] == COUNT - 1


def test_a_session_of_closes_gets_the_offline_forward_on_nan_ranges(mixed):
    client, registry, version = mixed
    reply = session(client, [b.close for b in real_bars("IBM", COUNT)])
    predictor = registry.predictor(version)
    [series] = build_series(sources.bundled(["IBM"]).iloc[:COUNT], ("returns", "range"), predictor.config.horizon)
    _, offline = model_outputs(predictor.model, predictor.scaler, without_ranges(series), 0)
    np.testing.assert_allclose(reply["forecast"]["log_return"], offline[-1], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("sent", "message"),
    [
        ({"close": 10.0, "high": 10.5}, "observation 3: low is missing while high is sent"),
        ({"close": 10.0, "low": 9.5}, "observation 3: high is missing while low is sent"),
        ({"close": 10.0, "high": 9.5, "low": 10.5}, "observation 3: high 9.5 is below low 10.5"),
    ],
)
def test_a_bar_with_half_its_range_is_refused_by_field_and_seq(mixed, sent, message):
    client, _, _ = mixed
    opened = client.post("/v1/sessions", json={"history": [10.0, {"close": 10.1, "high": 10.2, "low": 9.9}, 10.2]})
    assert opened.status_code == 201, opened.text
    url = f"/v1/sessions/{opened.json()['session_id']}/observations"
    refused = client.post(url, json={"seq": 3, "observations": [sent]})
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "invalid_data" and error["message"].startswith(message) and error["seq"] == 3
