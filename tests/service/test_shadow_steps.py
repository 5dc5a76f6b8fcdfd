"""Shadows stepped in the batch that plans their sessions' appends: all of one version by one call of its model."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient

from models.predictor import Predictor
from models.series import Observation, Stepped, StoredStep
from service.http.app import create_app
from service.live.scores import Issued
from service.sessions.shadow_steps import ShadowRunner, ShadowStep
from tests.service.conftest import MakeSettings
from tests.service.test_shadows import live_models
from training.registry import Registry

WARM = 70  # past the tiny ar model's window, so that its forecasts start at once
SESSIONS = 4
APPENDS = 6


def record_advances(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """The version and the number of streams of every ``Predictor.advance_stored`` call from now on."""
    advance_stored, calls = Predictor.advance_stored, []

    def recorded(self: Predictor, steps: Sequence[StoredStep]) -> list[Stepped | Exception | None]:
        calls.append((self.version, len(steps)))
        return advance_stored(self, steps)

    monkeypatch.setattr(Predictor, "advance_stored", recorded)
    return calls


def run(client: TestClient, closes: list[float], bulk: bool, calls: list[tuple[str, int]]) -> dict[str, Any]:
    """Open ``SESSIONS`` latent sessions with shadows, then append a close to each ``APPENDS`` times, all in one
    bulk request or one request each; the calls made while appending, the live scores and the pairs."""
    ids = []
    for i in range(SESSIONS):
        opened = client.post("/v1/sessions", json={"mode": "latent", "history": closes[i : i + WARM]})
        assert opened.status_code == 201, opened.text
        ids.append(opened.json()["session_id"])
    calls.clear()
    for k in range(APPENDS):
        items = [
            {"session_id": session_id, "seq": WARM + k, "observations": [closes[i + WARM + k]]}
            for i, session_id in enumerate(ids)
        ]
        if bulk:
            reply = client.post("/v1/observations", json={"items": items})
            assert [item["status"] for item in reply.json()["items"]] == [200] * SESSIONS, reply.text
        else:
            for item in items:
                body = {"seq": item["seq"], "observations": item["observations"]}
                reply = client.post(f"/v1/sessions/{item['session_id']}/observations", json=body)
                assert reply.status_code == 200, reply.text
    return {"calls": list(calls), "live": live_models(client), "pairs": client.get("/v1/compare/live").json()}


def test_the_shadows_of_a_batch_step_together_and_score_as_one_by_one(
    make_settings: MakeSettings, closes: list[float], registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = record_advances(monkeypatch)
    shown = []
    for bulk in (True, False):
        with TestClient(create_app(make_settings(shadow=1.0))) as client:
            shown.append(run(client, closes, bulk, calls))
    batched, alone = shown
    ar = registry.champion("ar")
    # one call of the shadows' model per bulk request, for all its sessions; one per append alone
    assert [n for version, n in batched["calls"] if version == ar] == [SESSIONS] * APPENDS
    assert [n for version, n in alone["calls"] if version == ar] == [1] * (SESSIONS * APPENDS)
    assert batched["live"].keys() == alone["live"].keys() == {"latent", "ar/shadow"}
    for mode in ("latent", "ar/shadow"):
        for h, row in alone["live"][mode].items():
            assert batched["live"][mode][h]["count"] == row["count"] > 0, (mode, h)
            for name in ("pinball", "coverage", "mae"):
                assert batched["live"][mode][h][name] == pytest.approx(row[name], rel=1e-5), (mode, h, name)
    [pair], [pair_alone] = batched["pairs"]["pairs"], alone["pairs"]["pairs"]
    for row, row_alone in zip(pair["horizons"], pair_alone["horizons"], strict=True):
        assert row["count"] == row_alone["count"] > 0
        assert row["mean_difference"] == pytest.approx(row_alone["mean_difference"], rel=1e-4, abs=1e-9)


def test_a_shadows_forecasts_of_an_earlier_format_are_dropped_and_the_shadow_scores_on(
    registry: Registry, bars: list[Observation]
) -> None:
    version = registry.champion("latent")
    assert version is not None
    session = registry.predictor(version)
    runner = ShadowRunner(1.0, registry.champion, registry.predictor, keep=10)
    [opened] = runner.open("s", "latent", session.version, bars[:WARM])
    earlier = b"\x02" + opened.issued[1:]  # the format that kept only the horizons still open
    model = Issued(session.version, session.config.horizon, len(session.config.quantiles))
    step = ShadowStep(
        dataclasses.replace(opened, issued=earlier), model, session.config.quantiles, WARM, bars[WARM : WARM + 1]
    )
    [(after, scores)] = runner.advance_all([step])
    assert after is not None and scores is None  # kept, with nothing to settle
    assert [p.origin for p in Issued.from_bytes(after.issued).pending] == [WARM]
    [(again, scores)] = runner.advance_all(
        [dataclasses.replace(step, shadow=after, first_seq=WARM + 1, appended=bars[WARM + 1 : WARM + 2])]
    )
    assert again is not None and scores is not None and scores.settled.by_horizon().keys() == {1}
