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

from latentcast.errors import StateError
from models.calibration import AdaptiveConfig, AdaptiveOffsets
from models.predictor import Forecast, Observation, Predictor, SeriesState
from models.series_batch import batch_from_bytes, batch_to_bytes
from service.forecasting import ModelRef
from service.sessions.replies import SessionReply, reply_bodies, reply_body, session_reply, stored_reply
from service.sessions.seq_rules import new_observations
from service.stores import SessionRecord, SessionUpdate, StoredReply
from service.stores.records import batch_digest, batch_digests


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


def plan_appends(
    predictor: Predictor, appends: list[Append], now: float, arrays_from: int = 1
) -> list[SessionReply | Change | Exception]:
    """For each append: its stored reply, its change, or why it is refused; the model runs once for all.

    In a batch of at least ``arrays_from`` appends, those of one new observation to a live latent
    session (the usual append) are planned as arrays from their states' bytes to their replies'
    (``_step_together``); the others one by one around one ``advance_many``. Both give the same changes.
    """
    arrays = len(appends) >= arrays_from
    results: dict[int, SessionReply | Change | Exception] = {}
    valid = []
    for i, append in enumerate(appends):
        try:
            predictor.validate(append.observations, append.seq)
            valid.append(i)
        except Exception as exc:  # refused alone: the other appends of the batch go on
            results[i] = exc
    batches = [appends[i].observations for i in valid]
    digests = batch_digests(batches) if arrays else [batch_digest(batch) for batch in batches]
    new: list[tuple[int, Sequence[Observation], bytes]] = []
    for i, digest in zip(valid, digests, strict=True):
        try:
            found = _check(predictor, appends[i], digest)
        except Exception as exc:
            results[i] = exc
            continue
        if isinstance(found, SessionReply):
            results[i] = found
        else:
            new.append((i, found, digest))
    model = ModelRef.of(predictor)  # one for all: a bulk request plans hundreds of appends
    if arrays:
        results |= _step_together(predictor, model, appends, new, now)
    ready: list[tuple[int, SeriesState, Sequence[Observation], bytes]] = []
    for i, tail, digest in new:
        if i in results:
            continue
        try:
            ready.append((i, state_of(predictor, appends[i].record), tail, digest))
        except Exception as exc:
            results[i] = exc
    advanced = predictor.advance_many([state for _, state, _, _ in ready], [tail for _, _, tail, _ in ready])
    for (i, _, tail, digest), state in zip(ready, advanced, strict=True):
        results[i] = _change_after(predictor, model, appends[i], tail, digest, state, now)
    return [results[i] for i in range(len(appends))]


def _step_together(
    predictor: Predictor,
    model: ModelRef,
    appends: list[Append],
    new: list[tuple[int, Sequence[Observation], bytes]],
    now: float,
) -> dict[int, Change]:
    """The changes of the ``new`` appends that add one observation to a live latent session without
    adaptive offsets, by index: states read, stepped, forecast and written as arrays (``SeriesBatch``).

    A state that does not read as a live stream's, or whose count is not its record's ``next_seq``,
    is left to the one-by-one path, which reads it or says why it cannot.
    """
    if predictor.config.mode != "latent":
        return {}
    lane = [(i, tail, digest) for i, tail, digest in new if len(tail) == 1 and not appends[i].record.calibration]
    batch, read = batch_from_bytes([appends[i].record.state for i, _, _ in lane], predictor.config)
    picked = [lane[k] for k in read]
    counted = batch.n_obs == np.array([appends[i].record.next_seq for i, _, _ in picked], np.int64)
    if not counted.all():
        batch = batch.take(counted)
        picked = [item for item, fits in zip(picked, counted.tolist(), strict=True) if fits]
    if not picked:
        return {}
    after = predictor.step_many(batch, [tail[0] for _, tail, _ in picked])
    changes = {}
    for (i, tail, digest), next_seq, forecast, state, body in zip(
        picked,
        after.n_obs.tolist(),
        predictor.forecasts(after),
        batch_to_bytes(after, predictor.config),
        reply_bodies(after),
        strict=True,
    ):
        record = appends[i].record
        update = SessionUpdate(
            next_seq=next_seq,
            state=state,
            mode=record.mode,
            version=record.version,
            updated=now,
            appended=tuple(tail),
            reply=StoredReply(seq=appends[i].seq, digest=digest, body=body),
        )
        changes[i] = Change(update, session_reply(record.session_id, predictor, next_seq, forecast, model), len(tail))
    return changes


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


def _check(predictor: Predictor, append: Append, digest: bytes) -> SessionReply | Sequence[Observation]:
    """The stored reply of a retry, or the batch's new tail; ``append`` has passed ``validate``."""
    for stored in reversed(append.record.replies):
        if stored.seq == append.seq and stored.digest == digest:
            reply = stored_reply(predictor, append.record.session_id, stored.body)
            if reply is not None:
                return reply
    return new_observations(append.record, append.seq, append.observations)


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
        config = AdaptiveConfig()
        adaptive = adaptive_offsets(predictor, record).observe(
            record.next_seq, closes, levels, config.rate, config.first_rate
        )
    forecast, adaptive = calibrated_forecast(predictor, state, adaptive)
    offsets = None if adaptive is None else adaptive.offsets
    reply = session_reply(record.session_id, predictor, state.n_obs, forecast, model)
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
