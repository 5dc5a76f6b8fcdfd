"""Streaming sessions: a model's state kept between requests, fed in order by ``seq``.

The rules (docs/design.md, "Session rules"):

- The warm-up history occupies seq 0..n-1, so ``next_seq`` is the number of
  observations applied. A batch carries ``seq``, the index of its first
  observation; ``seq == next_seq`` is applied.
- ``seq > next_seq`` is a gap: ``ConflictError`` naming the expected seq.
- ``seq < next_seq``: an exact retry of a recent batch (same seq, same content)
  is answered with its stored reply and not applied again; a batch whose
  overlap equals the observations already applied and which goes further has
  only its new tail applied; anything else is a conflict.
- A batch is validated whole before any of it is applied, and the store
  replaces a record only by compare-and-set on ``next_seq``: a request that
  loses a race reads the session again and answers as a retry or a conflict.
- A session stays on its model version until a client migrates it, which
  replays the retained observations through another version.

Appends to different sessions on the same model version may be stepped as one
batch (``service/sessions/planner.py``): each request still checks its rules under
its own session's lock and commits its own result, so batching changes only how
many streams one forward step carries. What a request changes is computed from
the record it read in ``service/sessions/steps.py``; this module reads, waits and
stores, with the caller's records read by ``service/sessions/owned_records.py``, one
append read, planned and committed by ``service/sessions/appender.py`` and the bulk
path in ``service/sessions/bulk.py``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from latentcast.errors import QuotaError
from models.calibration import AdaptiveOffsets
from models.series import Observation, SeriesState
from service.batching import in_thread
from service.forecasting import ModelRef, check_count
from service.live.shadows import Shadow, pack
from service.metrics import ServiceMetrics
from service.model_pool import ModelPool
from service.sessions.appender import Appender
from service.sessions.bulk import AppendItem, BulkAppends
from service.sessions.locks import SessionLocks
from service.sessions.owned_records import OwnedRecords, not_found
from service.sessions.planner import AppendPlanner, BatchSettings
from service.sessions.replies import SessionReply, session_reply
from service.sessions.shadow_steps import ShadowRunner
from service.sessions.steps import adaptive_offsets, calibrated_forecast, plan_migration, state_of
from service.stores import SessionRecord, SessionStore

# 24 random bytes: 192 bits, 32 URL-safe characters
SESSION_ID_BYTES = 24


@dataclass(frozen=True)
class SessionInfo:
    """What a session holds: its reply fields, plus label, times and retained span."""

    reply: SessionReply
    ticker: str | None
    created: float
    updated: float
    retained: int  # observations kept, the last ones before next_seq
    offsets: list[list[float]] | None = None  # adaptive offsets [horizon][quantile], None without them


@dataclass(frozen=True)
class MigrationReply:
    """A migrated session: its new reply, the model it left and how much was replayed."""

    reply: SessionReply
    previous: ModelRef
    replayed: int  # retained observations replayed through the new model
    first_replayed_seq: int  # > 0 when the session had seen more than it retained


class SessionService:
    """Open, feed, read, migrate and end sessions kept in a ``SessionStore``."""

    def __init__(
        self,
        store: SessionStore,
        pool: ModelPool,
        metrics: ServiceMetrics,
        max_batch: int,
        max_history: int,
        clock: Callable[[], float] = time.time,
        batching: BatchSettings | None = None,
        inline_observations: int = 0,
        live_scores: bool = False,
        shadows: ShadowRunner | None = None,
    ) -> None:
        self.store = store
        self.pool = pool
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_history = max_history
        self.locks = SessionLocks()
        self.records = OwnedRecords(store, pool)
        self.planner = AppendPlanner(metrics, batching, inline_observations, clock, live_scores, shadows)
        self.shadows = shadows if live_scores else None
        self._clock = clock
        self._appender = Appender(store, self.records, self.planner, metrics)
        self._bulk = BulkAppends(self._appender, self.locks, max_batch)

    async def open(
        self,
        owner: str,
        history: Sequence[Observation] = (),
        mode: str | None = None,
        version: str | None = None,
        ticker: str | None = None,
        adaptive: bool = False,
    ) -> SessionReply:
        """A new session on ``version`` (or the champion of ``mode``), warmed on ``history``.

        ``adaptive``: its quantile offsets move toward nominal coverage as outcomes arrive.
        """
        check_count(history, self.max_history, "history", "MAX_HISTORY")
        predictor = await in_thread(self.pool.resolve, mode, version)
        session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        state = await in_thread(predictor.advance, SeriesState(), history)
        offsets = AdaptiveOffsets.zeros(predictor.config.horizon, len(predictor.config.quantiles)) if adaptive else None
        forecast, offsets = calibrated_forecast(predictor, state, offsets)
        reply = session_reply(session_id, predictor, state.n_obs, forecast)
        shadows: tuple[Shadow, ...] = ()
        if self.shadows is not None:  # other models beside it, never answered (service/live/shadows.py)
            shadows = await in_thread(self.shadows.open, session_id, predictor.config.mode, predictor.version, history)
        now = self._clock()
        record = SessionRecord(
            session_id=session_id,
            owner=owner,
            mode=predictor.config.mode,
            version=predictor.version,
            ticker=ticker,
            next_seq=state.n_obs,
            state=predictor.state_to_bytes(state),
            retained=tuple(history),
            created=now,
            updated=now,
            calibration=b"" if offsets is None else offsets.to_bytes(),
            issued=pack(b"", shadows),
        )
        if not await self.store.create(record):
            limit = self.store.limits.max_sessions_per_owner
            raise QuotaError(
                f"this API key holds {limit} open sessions, the most it may (LATENTCAST_MAX_SESSIONS_PER_KEY): "
                "delete one or let one expire",
                limit=limit,
            )
        self.metrics.applied(record.mode, "open", len(history))
        return reply

    async def append(self, owner: str, session_id: str, seq: int, observations: Sequence[Observation]) -> SessionReply:
        """Apply the batch that starts at ``seq`` (once, whatever the retries); the reply after it."""
        check_count(observations, self.max_batch, "batch", "MAX_BATCH")
        # announced before any wait (the lock, the session's read): an append that reaches the batcher
        # meanwhile is gathered rather than run alone, and this one may join it (service/batching.py)
        with self.planner.announced() as announcement:
            async with self.locks.hold(session_id):
                return await self._appender.append_held(owner, session_id, seq, observations, announcement)

    async def append_many(self, owner: str, items: Sequence[AppendItem]) -> list[SessionReply | Exception]:
        """Each item applied as ``append`` applies it, on its own: its reply, or why it was refused
        (``BulkAppends.apply``)."""
        return await self._bulk.apply(owner, items)

    async def close(self) -> None:
        """Let the batches that are running finish."""
        await self.planner.close()

    async def read(self, owner: str, session_id: str) -> SessionInfo:
        record = await self.records.one(owner, session_id)
        predictor = await self.records.predictor(record.version)
        state = await in_thread(state_of, predictor, record)
        offsets = adaptive_offsets(predictor, record).offsets if record.calibration else None
        reply = session_reply(session_id, predictor, record.next_seq, predictor.forecast(state, offsets))
        shown = None if offsets is None else offsets.tolist()
        return SessionInfo(reply, record.ticker, record.created, record.updated, record.retained_count, shown)

    async def delete(self, owner: str, session_id: str) -> None:
        async with self.locks.hold(session_id):
            await self.records.one(owner, session_id)
            if not await self.store.delete(session_id):
                raise not_found(session_id)

    async def migrate(
        self, owner: str, session_id: str, mode: str | None = None, version: str | None = None
    ) -> MigrationReply:
        """Move the session to ``version`` (default: its mode's champion) by replaying what it retained."""
        async with self.locks.hold(session_id):
            while True:
                record = await self.records.one(owner, session_id, observations=None)
                target = await in_thread(self.pool.resolve, mode or record.mode, version)
                previous = ModelRef(record.mode, record.version)
                if target.version == record.version:
                    # replaying would only lose what the session saw before its retained observations
                    info = await self.read(owner, session_id)
                    return MigrationReply(info.reply, previous, 0, record.next_seq)
                change = await in_thread(plan_migration, target, record, self._clock())
                if await self.store.commit(session_id, record.next_seq, change.update):
                    self.metrics.applied(target.config.mode, "migrate", change.applied)
                    return MigrationReply(change.reply, previous, change.applied, record.first_retained_seq)
