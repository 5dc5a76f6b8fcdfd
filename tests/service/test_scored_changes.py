"""``service/sessions/scored_changes.py``: the forecasts a record awaits outcomes of, whatever the record kept."""

from __future__ import annotations

import dataclasses
import struct

from models.series import Observation, SeriesState
from service.live.scores import Issued
from service.sessions.scored_changes import awaiting, scored
from service.sessions.steps import Append, Change, plan_appends
from service.stores import SessionRecord
from training.registry import Registry

WARM = 20


def record_after(registry: Registry, bars: list[Observation], issued: bytes) -> tuple[SessionRecord, Issued]:
    """A record of the latent champion after ``WARM`` bars, and what its state answers now, awaiting outcomes."""
    version = registry.champion("latent")
    assert version is not None
    predictor = registry.predictor(version)
    state = predictor.advance(SeriesState(), bars[:WARM])
    record = SessionRecord("s", "", "latent", predictor.version, None, WARM, predictor.state_to_bytes(state))
    forecast = predictor.forecast(state)
    assert forecast is not None and state.last_close is not None
    now = Issued(predictor.version, 3, 3).with_forecast(WARM - 1, state.last_close, forecast.log_return)
    return dataclasses.replace(record, issued=issued), now


def test_a_record_without_issued_forecasts_awaits_the_one_its_state_answers(registry: Registry, bars):
    record, now = record_after(registry, bars, b"")
    predictor = registry.predictor(record.version)
    assert awaiting(predictor, record) == now


def test_another_versions_forecasts_are_dropped_after_a_migration(registry: Registry, bars):
    stale = Issued("latent-before", 3, 3).with_forecast(WARM - 2, 100.0, [[0.0] * 3] * 3)
    record, now = record_after(registry, bars, stale.to_bytes())
    assert awaiting(registry.predictor(record.version), record) == now


def test_kept_forecasts_that_hold_the_newest_are_read_as_kept(registry: Registry, bars):
    _, now = record_after(registry, bars, b"")
    kept = (
        Issued(now.version, 3, 3)
        .with_forecast(WARM - 2, 99.0, [[0.1] * 3] * 3)
        .with_forecast(WARM - 1, 98.0, [[0.2] * 3] * 3)
    )
    record, _ = record_after(registry, bars, kept.to_bytes())
    assert awaiting(registry.predictor(record.version), record) == kept


def test_kept_forecasts_that_do_not_read_never_refuse_an_append(registry: Registry, bars):
    _, now = record_after(registry, bars, b"")
    broken = Issued(now.version, 3, 3, struct.pack("<4d", WARM - 1, 100.0, 7.0, 0.0)).to_bytes()  # 7 horizons of 3
    record, _ = record_after(registry, bars, broken)
    predictor = registry.predictor(record.version)
    append = Append(record, WARM, [bars[WARM]])
    [change] = scored(predictor, [append], plan_appends(predictor, [append], 0.0))
    assert isinstance(change, Change) and change.update.scores is not None
    assert change.update.scores.by_horizon().keys() == {1}  # the forecast the state answered, settled at horizon 1
    assert change.update.issued is not None
    assert [p.origin for p in Issued.from_bytes(change.update.issued).pending] == [WARM - 1, WARM]
