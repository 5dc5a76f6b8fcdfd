"""What a session request changes, computed from the record it read: no I/O, no waiting.

``SessionService`` reads a record, hands it here, and stores the ``Change`` it
gets back by compare-and-set. The appends of a micro-batch are planned
together (``plan_appends``): each is checked on its own, and the model steps
all the accepted ones at once.

A session opened with adaptive calibration keeps ``AdaptiveOffsets`` in its
record: a step moves them by the outcomes its new closes reveal and issues the
next forecast with them, in the same compare-and-set as the model state, so a
retried batch (answered from its stored reply) never moves them twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from data.errors import StateError
from models.calibration import AdaptiveConfig, AdaptiveOffsets
from models.predictor import Forecast, Observation, Predictor, SeriesState
from service.forecasting import ModelRef
from service.replies import SessionReply, reply_body, stored_reply
from service.seq_rules import new_observations
from service.stores import SessionRecord, SessionUpdate, StoredReply
from service.stores.records import batch_digest


@dataclass(frozen=True)
class Append:
    """One request's batch, with the record it was read against."""

    record: SessionRecord
    seq: int
    observations: Sequence[Observation]


@dataclass(frozen=True)
class Change:
    """A change computed from a record, to be stored by compare-and-set."""

    update: SessionUpdate
    reply: SessionReply
    applied: int


def plan_appends(predictor: Predictor, appends: list[Append], now: float) -> list[SessionReply | Change | Exception]:
    """For each append: its stored reply, its change, or why it is refused; the model runs once for all."""
    results: dict[int, SessionReply | Change | Exception] = {}
    ready: list[tuple[int, SeriesState, Sequence[Observation], bytes]] = []
    for i, append in enumerate(appends):
        try:
            found = _check(predictor, append)
        except Exception as exc:  # refused alone: the other appends of the batch go on
            results[i] = exc
            continue
        if isinstance(found, SessionReply):
            results[i] = found
        else:
            ready.append((i, *found))
    advanced = predictor.advance_many([state for _, state, _, _ in ready], [tail for _, _, tail, _ in ready])
    model = ModelRef.of(predictor)  # one for all: a bulk request plans hundreds of appends
    for (i, _, tail, digest), state in zip(ready, advanced, strict=True):
        results[i] = _change_after(predictor, model, appends[i], tail, digest, state, now)
    return [results[i] for i in range(len(appends))]


def plan_migration(target: Predictor, record: SessionRecord, now: float) -> Change:
    """The session moved to ``target`` by replaying the observations it retains.

    Adaptive offsets are kept (they measure how this asset's outcomes fall
    against forecasts of the same quantiles); the forecasts awaiting outcomes
    are the old model's and are dropped.
    """
    state = target.advance(SeriesState(n_obs=record.first_retained_seq), record.retained)
    adaptive = None
    if record.calibration:
        adaptive = AdaptiveOffsets(adaptive_offsets(target, record).offsets)
    forecast, adaptive = calibrated_forecast(target, state, adaptive)
    reply = SessionReply(record.session_id, ModelRef.of(target), state.n_obs, forecast)
    update = SessionUpdate(
        next_seq=record.next_seq,
        state=target.state_to_bytes(state),
        mode=target.config.mode,
        version=target.version,
        updated=now,
        clear_replies=True,  # the stored replies came from the previous model
        calibration=None if adaptive is None else adaptive.to_bytes(),
    )
    return Change(update, reply, len(record.retained))


def adaptive_offsets(predictor: Predictor, record: SessionRecord) -> AdaptiveOffsets:
    """The record's adaptive offsets (it must have them); ``StateError`` if they do not fit ``predictor``."""
    config = predictor.config
    return AdaptiveOffsets.from_bytes(record.calibration, config.horizon, len(config.quantiles))


def calibrated_forecast(
    predictor: Predictor, state: SeriesState, adaptive: AdaptiveOffsets | None
) -> tuple[Forecast | None, AdaptiveOffsets | None]:
    """The forecast after ``state`` with the session's adaptive offsets, if any, now awaiting its outcomes."""
    if adaptive is None:
        return predictor.forecast(state), None
    forecast = predictor.forecast(state, adaptive.offsets)
    if forecast is None or state.last_close is None:
        return forecast, adaptive
    return forecast, adaptive.issue(forecast.as_of_seq, state.last_close, np.array(forecast.log_return))


def state_of(predictor: Predictor, record: SessionRecord) -> SeriesState:
    """The record's model state; ``StateError`` if it does not match the record's ``next_seq``."""
    state = predictor.state_from_bytes(record.state)
    if state.n_obs != record.next_seq:
        raise StateError(
            f"session {record.session_id}: state holds {state.n_obs} observations, next_seq is {record.next_seq}"
        )
    return state


def _check(predictor: Predictor, append: Append) -> SessionReply | tuple[SeriesState, Sequence[Observation], bytes]:
    """The stored reply of a retry, or the state to advance, the new tail and the batch's digest."""
    predictor.validate(append.observations, append.seq)
    digest = batch_digest(append.observations)
    for stored in reversed(append.record.replies):
        if stored.seq == append.seq and stored.digest == digest:
            reply = stored_reply(predictor, append.record.session_id, stored.body)
            if reply is not None:
                return reply
    tail = new_observations(append.record, append.seq, append.observations)
    return state_of(predictor, append.record), tail, digest


def _change_after(
    predictor: Predictor,
    model: ModelRef,
    append: Append,
    tail: Sequence[Observation],
    digest: bytes,
    state: SeriesState,
    now: float,
) -> Change:
    record = append.record
    adaptive = None
    if record.calibration:
        levels = np.asarray(predictor.config.quantiles)
        closes = [obs.close for obs in tail]
        adaptive = adaptive_offsets(predictor, record).observe(record.next_seq, closes, levels, AdaptiveConfig().rate)
    forecast, adaptive = calibrated_forecast(predictor, state, adaptive)
    offsets = None if adaptive is None else adaptive.offsets
    reply = SessionReply(record.session_id, model, state.n_obs, forecast)
    update = SessionUpdate(
        next_seq=state.n_obs,
        state=predictor.state_to_bytes(state),
        mode=record.mode,
        version=record.version,
        updated=now,
        appended=tuple(tail),
        reply=StoredReply(seq=append.seq, digest=digest, body=reply_body(state, offsets)),
        calibration=None if adaptive is None else adaptive.to_bytes(),
    )
    return Change(update, reply, len(tail))
