"""What a session request changes, computed from the record it read: no I/O, no waiting.

``SessionService`` reads a record, hands it here, and stores the ``Change`` it
gets back by compare-and-set. The appends of a micro-batch are planned
together (``plan_appends``): each is checked on its own, and one call into the
model (``Predictor.advance_stored``) validates and steps them all.

A session opened with adaptive calibration keeps ``AdaptiveOffsets`` in its
record: a step moves them by the outcomes its new closes reveal and issues the
next forecast with them, in the same compare-and-set as the model state, so a
retried batch (answered from its stored reply) never moves them twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from latentcast.errors import DataError, StateError
from models.calibration import AdaptiveConfig, AdaptiveOffsets
from models.predictor import Predictor
from models.series import Forecast, Observation, SeriesState, Stepped, StoredStep
from service.forecasting import ModelRef
from service.sessions.replies import SessionReply, reply_body, session_reply, stored_reply
from service.sessions.seq_rules import new_observations
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
    """For each append: its stored reply, its change, or why it is refused; one call into the model for all.

    A retry is answered from its stored reply; the others go to ``Predictor.advance_stored``, which
    validates each batch whole and steps its new tail. A batch refused by the seq rules
    (``new_observations``) is still validated there, so that a bad value is named before a conflict.
    """
    results: dict[int, SessionReply | Change | Exception] = {}
    pending: list[tuple[int, Sequence[Observation], bytes, AdaptiveOffsets | None, Exception | None]] = []
    steps: list[StoredStep] = []
    for i, append in enumerate(appends):
        record, digest = append.record, batch_digest(append.observations)
        tail: Sequence[Observation] = ()
        adaptive, refused = None, None
        try:
            reply = retry_reply(predictor, append, digest)
            if reply is not None:
                results[i] = reply
                continue
            tail = new_observations(record, append.seq, append.observations)
            if not tail:
                raise DataError(f"session {record.session_id}: a batch holds at least one observation")
            adaptive = observed_offsets(predictor, record, tail) if record.calibration else None
        except Exception as exc:  # refused alone: the other appends of the batch go on
            tail, refused = (), exc
        offsets = None if adaptive is None else adaptive.offsets
        steps.append(StoredStep(record.state, record.next_seq, append.observations, append.seq, len(tail), offsets))
        pending.append((i, tail, digest, adaptive, refused))
    model = ModelRef.of(predictor)  # one for all: a bulk request plans hundreds of appends
    for (i, tail, digest, adaptive, refused), stepped in zip(pending, predictor.advance_stored(steps), strict=True):
        if isinstance(stepped, StateError) and refused is None:
            results[i] = _of_session(stepped, appends[i].record)
        elif isinstance(stepped, Exception):  # a bad value is named before any other refusal
            results[i] = stepped
        elif refused is not None:
            results[i] = refused
        else:
            assert stepped is not None, "an append that is not refused has new observations"
            results[i] = _change_after(predictor, model, appends[i], tail, digest, stepped, adaptive, now)
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
        kept = adaptive_offsets(target, record)
        adaptive = AdaptiveOffsets(kept.offsets, (), kept.outcomes)
    forecast, adaptive = calibrated_forecast(target, state, adaptive)
    reply = session_reply(record.session_id, target, state.n_obs, forecast)
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


def retry_reply(predictor: Predictor, append: Append, digest: bytes) -> SessionReply | None:
    """The reply stored for the batch ``append`` retries (same seq, same ``digest``), or None if it is no retry."""
    for stored in reversed(append.record.replies):
        if stored.seq == append.seq and stored.digest == digest:
            reply = stored_reply(predictor, append.record.session_id, stored.body)
            if reply is not None:
                return reply
    return None


def observed_offsets(predictor: Predictor, record: SessionRecord, tail: Sequence[Observation]) -> AdaptiveOffsets:
    """The record's adaptive offsets moved by the outcomes that ``tail``'s closes reveal."""
    levels, config = np.asarray(predictor.config.quantiles), AdaptiveConfig()
    closes = [obs.close for obs in tail]
    return adaptive_offsets(predictor, record).observe(record.next_seq, closes, levels, config.rate, config.first_rate)


def _of_session(error: StateError, record: SessionRecord) -> StateError:
    return StateError(f"session {record.session_id}: {error}")


def _change_after(
    predictor: Predictor,
    model: ModelRef,
    append: Append,
    tail: Sequence[Observation],
    digest: bytes,
    stepped: Stepped,
    adaptive: AdaptiveOffsets | None,
    now: float,
) -> Change:
    """The change of ``append`` once the model has stepped its ``tail``; its adaptive offsets now await the
    outcomes of the new forecast."""
    record, forecast = append.record, stepped.forecast
    if adaptive is not None and forecast is not None and stepped.last_close is not None:
        adaptive = adaptive.issue(forecast.as_of_seq, stepped.last_close, np.array(forecast.log_return))
    offsets = None if adaptive is None else adaptive.offsets
    update = SessionUpdate(
        next_seq=stepped.n_obs,
        state=stepped.state,
        mode=record.mode,
        version=record.version,
        updated=now,
        appended=tuple(tail),
        reply=StoredReply(seq=append.seq, digest=digest, body=reply_body(stepped, offsets)),
        calibration=None if adaptive is None else adaptive.to_bytes(),
    )
    return Change(update, session_reply(record.session_id, predictor, stepped.n_obs, forecast, model), len(tail))
