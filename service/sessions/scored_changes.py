"""Planned appends with their live scores: what each change settles, computed with no I/O.

``plan_appends`` (``service/sessions/steps.py``) computes each append's change;
``scored`` adds to it the forecasts the change settles (``SessionUpdate.scores``,
which the store adds to its sums only if it commits the change) and what then
still awaits outcomes (``SessionUpdate.issued``, stored in the same
compare-and-set). A stored reply (a retry) or a refusal settles nothing.

A record whose issued forecasts are missing (a session opened, migrated, or
kept while scoring was off), are another version's (a migration) or do not
read starts from the forecast its state answers now, the last one the session
answered: scoring never refuses an append.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from latentcast.errors import StateError
from models.predictor import Predictor
from service.live.scores import Issued, Settled, settle, settle_stored
from service.live.shadows import Shadow, ShadowScores, pack, packed, unpack
from service.sessions.replies import SessionReply
from service.sessions.shadow_steps import ShadowRunner, ShadowStep
from service.sessions.steps import Append, Change, adaptive_offsets, state_of
from service.stores import SessionRecord, SessionUpdate

Planned = SessionReply | Change | Exception


def scored(
    predictor: Predictor, appends: Sequence[Append], results: list[Planned], shadows: ShadowRunner | None = None
) -> list[Planned]:
    """``results`` of ``plan_appends(predictor, appends, ...)``, each change with what it settles and issues;
    with ``shadows``, the sessions' shadows advanced and scored beside them, all of one version by one call
    of its model (``service/sessions/shadow_steps.py``)."""
    levels = predictor.config.quantiles
    out: list[Planned] = list(results)
    live: dict[int, tuple[bytes, Settled]] = {}  # the changes whose shadows step: finished once they have
    steps: list[tuple[int, ShadowStep]] = []
    for i, (append, result) in enumerate(zip(appends, results, strict=True)):
        if isinstance(result, Change) and result.update.appended:
            (blob, settled), own = _scored_change(predictor, levels, append.record, result, shadows)
            if own:
                live[i] = blob, settled
                steps += [(i, step) for step in own]
            else:
                out[i] = _with_scores(result, blob, settled, ())
    if shadows is None or not steps:
        return out
    kept: dict[int, list[Shadow]] = {}
    scores: dict[int, list[ShadowScores]] = {}
    for (i, _), (shadow, shadow_scores) in zip(steps, shadows.advance_all([s for _, s in steps]), strict=True):
        if shadow is not None:
            kept.setdefault(i, []).append(shadow)
        if shadow_scores is not None:
            scores.setdefault(i, []).append(shadow_scores)
    for i, (blob, settled) in live.items():
        change = results[i]
        assert isinstance(change, Change)
        out[i] = _with_scores(change, pack(blob, kept.get(i, ())), settled, tuple(scores.get(i, ())))
    return out


def _scored_change(
    predictor: Predictor,
    levels: tuple[float, ...],
    record: SessionRecord,
    change: Change,
    shadows: ShadowRunner | None,
) -> tuple[tuple[bytes, Settled], list[ShadowStep]]:
    """What ``change`` settles of the session's forecasts and what then awaits outcomes (as stored), and the
    steps of the shadows it keeps."""
    update = change.update
    closes = [obs.close for obs in update.appended]
    forecast = change.reply.forecast
    made = None if forecast is None else (forecast.as_of_seq, closes[-1], forecast.log_return)
    config = predictor.config
    # as an append finds them when the previous one was scored: no shadows, of this version, the newest the
    # last observation's (``settle_stored``); read as ``Issued`` otherwise
    try:
        stored = settle_stored(record.issued, predictor.version, config.horizon, record.next_seq, closes, levels, made)
    except StateError:
        stored = None
    if stored is not None:
        settled, blob = stored
        return (blob, settled), []
    found: tuple[Shadow, ...] = ()
    if packed(record.issued):
        try:
            kept, found = unpack(record.issued)
        except StateError:  # shadows that do not read are dropped; the session goes on
            kept = b""
        record = dataclasses.replace(record, issued=kept)
    try:
        model = awaiting(predictor, record)
        settled, issued = settle(model, record.next_seq, closes, levels)
    except StateError:  # kept forecasts that do not read: scoring goes on from the one the state answers
        record = dataclasses.replace(record, issued=b"")
        model = awaiting(predictor, record)
        settled, issued = settle(model, record.next_seq, closes, levels)
    if made is not None:
        issued = issued.with_forecast(*made)
    if shadows is None:
        return (issued.to_bytes(), settled), []  # shadows are off: a session drops its own
    # a session migrated to a shadow's version drops that shadow (the pair would be one model)
    steps = [
        ShadowStep(shadow, model, levels, record.next_seq, update.appended)
        for shadow in found
        if shadow.version != predictor.version
    ]
    return (issued.to_bytes(), settled), steps


def _with_scores(change: Change, issued: bytes, settled: Settled, shadow_scores: tuple[ShadowScores, ...]) -> Change:
    """``change`` with the forecasts it leaves awaiting outcomes, its scores if it settled any, and its
    shadows'. The update is made as a copy of its fields, not by ``dataclasses.replace``, which calls the class
    with every field by name and costs more than scoring the append."""
    update = object.__new__(SessionUpdate)
    update.__dict__.update(
        change.update.__dict__,
        issued=issued,
        scores=settled if settled.count else None,
        shadow_scores=shadow_scores,
    )
    return Change(update, change.reply, change.applied)


def awaiting(predictor: Predictor, record: SessionRecord) -> Issued:
    """The forecasts of ``record`` that await outcomes, the one its state answers now among them."""
    config = predictor.config
    shape = (predictor.version, config.horizon, len(config.quantiles))
    # forecasts of another version or shape (a migration), or that do not read, are dropped: scoring goes on
    # from the forecast the state answers
    issued = Issued.of(record.issued, *shape) if record.issued else None
    if issued is None:
        issued = Issued(*shape)
    last = record.next_seq - 1
    if issued.newest == last or last < 0:
        return issued
    state = state_of(predictor, record)
    offsets = adaptive_offsets(predictor, record).offsets if record.calibration else None
    forecast = predictor.forecast(state, offsets)
    if forecast is None or state.last_close is None:
        return issued
    return issued.with_forecast(forecast.as_of_seq, state.last_close, forecast.log_return)
