"""``BulkAppends``: the batches of a bulk request (or WebSocket messages) for many sessions, each on its own.

Every item follows the single append's rules (docs/design.md, "Session rules"):
a retry is answered from its stored reply, a gap or a different overlap is a
``ConflictError``, another key's session is a ``NotFoundError``, a bad value a
``DataError``; one item's error never blocks or half-applies another. What is
shared is the work around the items, done once per request rather than once
per item: the sessions' locks are taken together, their records read in one
store call, the items of one model version planned as one batch (the latent
ones with one new observation take one step of the kernel together), and the
changes committed in one store call, each still by compare-and-set on its own
session's ``next_seq``. An item whose compare-and-set fails (another process
moved its session on) goes through the single append's path, which reads the
session again and answers it as a retry or a conflict.

The items of one session are applied in their order: round k holds the k-th
item of each session, and the rounds run one after another.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from latentcast.errors import LimitError
from models.series import Observation
from service.forecasting import check_count
from service.sessions.appender import Appender
from service.sessions.locks import SessionLocks
from service.sessions.replies import SessionReply
from service.sessions.steps import Append, Change

Result = SessionReply | Exception


@dataclass(frozen=True)
class AppendItem:
    """One item of a bulk append: a batch for one session."""

    session_id: str
    seq: int
    observations: Sequence[Observation]


class BulkAppends:
    """Applies many sessions' batches with one read, one plan per model version and one commit per round.

    ``appender``'s parts do the work (its records, planner, store and metrics); an item whose
    compare-and-set fails goes through ``appender.append_held``, as a single append does.
    """

    def __init__(self, appender: Appender, locks: SessionLocks, max_batch: int) -> None:
        self.appender = appender
        self.records = appender.records
        self.locks = locks
        self.max_batch = max_batch

    async def apply(self, owner: str, items: Sequence[AppendItem]) -> list[Result]:
        """Each item's reply, or why it was refused, in order."""
        results: list[Result | None] = [None] * len(items)
        for round_ in rounds(items):
            for i, result in zip(round_, await self._round(owner, [items[i] for i in round_]), strict=True):
                results[i] = result
        assert all(result is not None for result in results)
        return results  # type: ignore[return-value]

    async def _round(self, owner: str, items: list[AppendItem]) -> list[Result]:
        """``apply`` for items of different sessions."""
        results: list[Result | None] = [None] * len(items)
        counted = []
        for i, item in enumerate(items):
            try:
                check_count(item.observations, self.max_batch, "batch", "MAX_BATCH")
                counted.append(i)
            except LimitError as exc:
                results[i] = exc
        async with self.locks.hold_many(items[i].session_id for i in counted):
            try:
                by_version = await self._read(owner, items, counted, results)
                changes = await self._plan(by_version, results)
                await self._commit(owner, items, changes, results)
            except Exception as exc:  # the store is away: every item not answered yet gets its error
                results = [exc if result is None else result for result in results]
        assert all(result is not None for result in results)
        return results  # type: ignore[return-value]

    async def _read(
        self, owner: str, items: list[AppendItem], counted: list[int], results: list[Result | None]
    ) -> dict[str, list[tuple[int, Append]]]:
        """The appends of the items whose sessions are the caller's, by model version."""
        records = await self.records.many(owner, [items[i].session_id for i in counted])
        by_version: dict[str, list[tuple[int, Append]]] = {}
        for i, record in zip(counted, records, strict=True):
            if isinstance(record, Exception):
                results[i] = record
                continue
            item = items[i]
            if item.seq < record.next_seq:  # a retry or an overlap: it needs the replies and retained observations
                try:
                    record = await self.records.since(owner, item.session_id, item.seq, record)
                except Exception as exc:
                    results[i] = exc
                    continue
            by_version.setdefault(record.version, []).append((i, Append(record, item.seq, item.observations)))
        return by_version

    async def _plan(
        self, by_version: dict[str, list[tuple[int, Append]]], results: list[Result | None]
    ) -> list[tuple[int, Append, Change]]:
        """Each version's appends planned as one batch; the changes to commit (retries and refusals are answered)."""
        changes = []
        for version, appends in by_version.items():
            planned: Sequence[SessionReply | Change | Exception]
            try:
                predictor = await self.records.predictor(version)
                planned = await self.appender.planner.plan_many(predictor, [append for _, append in appends])
            except Exception as exc:  # the version did not load: its items only are refused
                planned = [exc] * len(appends)
            for (i, append), change in zip(appends, planned, strict=True):
                if isinstance(change, Change):
                    changes.append((i, append, change))
                else:
                    results[i] = change
        return changes

    async def _commit(
        self,
        owner: str,
        items: list[AppendItem],
        changes: list[tuple[int, Append, Change]],
        results: list[Result | None],
    ) -> None:
        commits = [(append.record.session_id, append.record.next_seq, change.update) for _, append, change in changes]
        done = await self.appender.store.commit_many(commits) if commits else []
        applied: Counter[str] = Counter()
        lost = []
        for (i, append, change), committed in zip(changes, done, strict=True):
            if committed:
                applied[append.record.mode] += change.applied
                results[i] = change.reply
            else:
                lost.append(i)
        # counted before anything else is awaited: what is committed is visible, and so is its count
        for mode, count in applied.items():
            self.appender.metrics.applied(mode, "append", count)
        for i in lost:  # another process moved this session on: the single append's path reads it again
            item = items[i]
            try:
                results[i] = await self.appender.append_held(owner, item.session_id, item.seq, item.observations)
            except Exception as exc:
                results[i] = exc


def rounds(items: Sequence[AppendItem]) -> list[list[int]]:
    """Item indices in rounds: round k holds the k-th item of each session, so a session's items go in order."""
    found: list[list[int]] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        k = seen.get(item.session_id, 0)
        seen[item.session_id] = k + 1
        if k == len(found):
            found.append([])
        found[k].append(i)
    return found
