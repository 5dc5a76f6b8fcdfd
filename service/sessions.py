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
batch (``MicroBatcher``): each request still checks its rules under its own
session's lock and commits its own result, so batching changes only how many
streams one forward step carries. What a request changes is computed from the
record it read in ``service/session_steps.py``; this module reads, waits and
stores.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from data.errors import NotFoundError, QuotaError
from models.calibration import AdaptiveOffsets
from models.predictor import Observation, Predictor, SeriesState
from service.batching import MicroBatcher
from service.forecasting import ModelRef, check_count, in_thread
from service.metrics import ServiceMetrics
from service.model_pool import ModelPool
from service.replies import SessionReply
from service.session_steps import (
    Append,
    Change,
    adaptive_offsets,
    calibrated_forecast,
    plan_appends,
    plan_migration,
    state_of,
)
from service.stores import SessionRecord, SessionStore

# 24 random bytes: 192 bits, 32 URL-safe characters
SESSION_ID_BYTES = 24
SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_SHOWN_ID = 64


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


@dataclass(frozen=True)
class AppendItem:
    """One item of a bulk append: a batch for one session."""

    session_id: str
    seq: int
    observations: Sequence[Observation]


@dataclass(frozen=True)
class BatchSettings:
    """Micro-batching of appends: off, or at most ``max_size`` per batch gathered for up to ``wait_seconds``."""

    enabled: bool = False
    wait_seconds: float = 0.002
    max_size: int = 64


class SessionLocks:
    """One asyncio lock per session in use: requests to one session run one at a time."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


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
    ) -> None:
        self.store = store
        self.pool = pool
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_history = max_history
        self.locks = SessionLocks()
        self._clock = clock
        self.inline_observations = inline_observations
        batching = batching or BatchSettings()
        self._batcher: MicroBatcher[Predictor, Append, SessionReply | Change] | None = None
        if batching.enabled:
            self._batcher = MicroBatcher(
                self._plan_batch,
                batching.wait_seconds,
                batching.max_size,
                on_batch=metrics.batched,
                inline=self._runs_inline,
            )

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
        reply = SessionReply(session_id, ModelRef.of(predictor), state.n_obs, forecast)
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
        async with self.locks.hold(session_id):
            return await self._append_held(owner, session_id, seq, observations)

    async def append_many(self, owner: str, items: Sequence[AppendItem]) -> list[SessionReply | Exception]:
        """Each item applied as ``append`` applies it, on its own: its reply, or why it was refused.

        The items of one session are applied in their order. The items read together are planned
        together, one ``plan_appends`` per model version, so that the latent ones with one new
        observation take one change of the kernel; each commits its own session.
        """
        results: list[SessionReply | Exception | None] = [None] * len(items)
        for round_ in _rounds(items):
            for i, exc in zip(round_, await self._append_round(owner, [items[i] for i in round_]), strict=True):
                results[i] = exc
        assert all(result is not None for result in results)
        return results  # type: ignore[return-value]

    async def _append_round(self, owner: str, items: list[AppendItem]) -> list[SessionReply | Exception]:
        """``append_many`` for items of different sessions."""
        results: dict[int, SessionReply | Exception] = {}
        async with contextlib.AsyncExitStack() as held:
            # in one order, so that two requests holding some of the same sessions cannot wait for each other
            for session_id in sorted(item.session_id for item in items):
                await held.enter_async_context(self.locks.hold(session_id))
            records = await asyncio.gather(*(self._item_record(owner, item) for item in items), return_exceptions=True)
            by_version: dict[str, list[tuple[int, Append]]] = {}
            for i, (item, record) in enumerate(zip(items, records, strict=True)):
                if isinstance(record, BaseException):
                    results[i] = _exception(record)
                else:
                    by_version.setdefault(record.version, []).append((i, Append(record, item.seq, item.observations)))
            for version, appends in by_version.items():
                try:
                    predictor = await self._predictor(version)
                    planned = await self._plan_many(predictor, [append for _, append in appends])
                except Exception as exc:  # the version did not load: its items only are refused
                    planned = [exc] * len(appends)
                commits = [(i, append, change) for (i, append), change in zip(appends, planned, strict=True)]
                done = await asyncio.gather(
                    *(self._commit_item(owner, items[i], append, change) for i, append, change in commits),
                    return_exceptions=True,
                )
                for (i, _, _), result in zip(commits, done, strict=True):
                    results[i] = _exception(result) if isinstance(result, BaseException) else result
        return [results[i] for i in range(len(items))]

    async def _item_record(self, owner: str, item: AppendItem) -> SessionRecord:
        check_count(item.observations, self.max_batch, "batch", "MAX_BATCH")
        record = await self._record(owner, item.session_id)
        if item.seq < record.next_seq:
            record = await self._record_since(owner, item.session_id, item.seq, record)
        return record

    async def _commit_item(
        self, owner: str, item: AppendItem, append: Append, change: SessionReply | Change | Exception
    ) -> SessionReply:
        if isinstance(change, Exception):
            raise change
        if isinstance(change, SessionReply):
            return change
        record = append.record
        if await self.store.commit(item.session_id, record.next_seq, change.update):
            self.metrics.applied(record.mode, "append", change.applied)
            return change.reply
        # another worker moved this session on: the single append's path reads it again
        return await self._append_held(owner, item.session_id, item.seq, item.observations)

    async def _append_held(
        self, owner: str, session_id: str, seq: int, observations: Sequence[Observation]
    ) -> SessionReply:
        """``append`` with the session's lock held."""
        while True:
            # a new batch needs neither stored replies nor retained observations
            record = await self._record(owner, session_id)
            if seq < record.next_seq:
                record = await self._record_since(owner, session_id, seq, record)
            predictor = await self._predictor(record.version)
            change = await self._plan(predictor, Append(record, seq, observations))
            if isinstance(change, SessionReply):
                return change
            if await self.store.commit(session_id, record.next_seq, change.update):
                self.metrics.applied(record.mode, "append", change.applied)
                return change.reply
            # another worker moved this session on: read it again, answer as a retry or a conflict

    async def close(self) -> None:
        """Let the batches that are running finish."""
        if self._batcher is not None:
            await self._batcher.close()

    async def read(self, owner: str, session_id: str) -> SessionInfo:
        record = await self._record(owner, session_id)
        predictor = await self._predictor(record.version)
        state = await in_thread(state_of, predictor, record)
        offsets = adaptive_offsets(predictor, record).offsets if record.calibration else None
        reply = SessionReply(session_id, ModelRef.of(predictor), record.next_seq, predictor.forecast(state, offsets))
        shown = None if offsets is None else offsets.tolist()
        return SessionInfo(reply, record.ticker, record.created, record.updated, record.retained_count, shown)

    async def delete(self, owner: str, session_id: str) -> None:
        async with self.locks.hold(session_id):
            await self._record(owner, session_id)
            if not await self.store.delete(session_id):
                raise _not_found(session_id)

    async def migrate(
        self, owner: str, session_id: str, mode: str | None = None, version: str | None = None
    ) -> MigrationReply:
        """Move the session to ``version`` (default: its mode's champion) by replaying what it retained."""
        async with self.locks.hold(session_id):
            while True:
                record = await self._record(owner, session_id, observations=None)
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

    # planning, on the event loop or in a worker thread (service/session_steps.py) ----

    async def _plan(self, predictor: Predictor, append: Append) -> SessionReply | Change:
        """The reply (a retry) or the change that ``append`` makes, batched with others when enabled."""
        if self._batcher is not None:
            return await self._batcher.submit(predictor, append)
        appends = [append]
        if self._runs_inline(appends):
            [change] = self._plan_batch(predictor, appends)
        else:
            [change] = await in_thread(self._plan_batch, predictor, appends)
        if isinstance(change, Exception):
            raise change
        return change

    async def _plan_many(self, predictor: Predictor, appends: list[Append]) -> list[SessionReply | Change | Exception]:
        """The appends of a bulk request planned as one batch: on the event loop if small, else in a thread."""
        if self._runs_inline(appends):
            return self._plan_batch(predictor, appends)
        return await in_thread(self._plan_batch, predictor, appends)

    def _plan_batch(self, predictor: Predictor, appends: list[Append]) -> list[SessionReply | Change | Exception]:
        return plan_appends(predictor, appends, self._clock())

    def _runs_inline(self, appends: list[Append]) -> bool:
        """Whether appends are small enough to plan on the event loop rather than in a worker thread."""
        return sum(len(append.observations) for append in appends) <= self.inline_observations

    async def _predictor(self, version: str) -> Predictor:
        # a thread only when the version must be read from disk (pinned, after a restart or an unload)
        predictor = self.pool.get_loaded(version)
        return predictor if predictor is not None else await in_thread(self.pool.get, version)

    async def _record_since(self, owner: str, session_id: str, seq: int, record: SessionRecord) -> SessionRecord:
        """For a retry or an overlap from ``seq``: the record with its replies and what it retains from ``seq``."""
        while True:
            record = await self._record(owner, session_id, record.next_seq - seq, replies=True)
            # another worker may have moved the session on between two reads: then read more
            if not (
                record.first_retained_seq <= seq < record.next_seq and len(record.retained) < record.next_seq - seq
            ):
                return record

    async def _record(
        self, owner: str, session_id: str, observations: int | None = 0, replies: bool = False
    ) -> SessionRecord:
        """The caller's session, with its last ``observations`` retained (all for None), and its stored
        replies if asked for: only a batch in the past reads them (to answer a retry)."""
        valid = SESSION_ID_PATTERN.match(session_id)
        record = await self.store.get(session_id, observations, replies, owner=owner) if valid else None
        # a session of another key is answered exactly as one that does not exist
        if record is None or not hmac.compare_digest(record.owner, owner):
            raise _not_found(session_id)
        return record


def _rounds(items: Sequence[AppendItem]) -> list[list[int]]:
    """Item indices in rounds: round k holds the k-th item of each session, so a session's items go in order."""
    rounds: list[list[int]] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        k = seen.get(item.session_id, 0)
        seen[item.session_id] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(i)
    return rounds


def _exception(error: BaseException) -> Exception:
    """An item's error; a cancellation is not an item's error and goes on."""
    if not isinstance(error, Exception):
        raise error
    return error


def _not_found(session_id: str) -> NotFoundError:
    shown = session_id if len(session_id) <= MAX_SHOWN_ID else session_id[:MAX_SHOWN_ID] + "..."
    return NotFoundError(f"no session {shown!r}: it does not exist, has expired or belongs to another key")
