"""``Appender``: one session's batch read, planned and committed, with the session's lock held by the caller.

The single append (``SessionService.append``) runs it under its session's
lock; a bulk request (``service/sessions/bulk.py``) runs it for an item whose
compare-and-set failed, under the lock it took for the whole round. Both hold
the parts it works with, built once by ``SessionService``; neither calls back
into the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from models.series import Observation
from service.batching import Announcement
from service.metrics import ServiceMetrics
from service.sessions.owned_records import OwnedRecords
from service.sessions.planner import AppendPlanner
from service.sessions.replies import SessionReply
from service.sessions.steps import Append
from service.stores import SessionStore


@dataclass(frozen=True)
class Appender:
    """What an append goes through: the caller's records, the planner, the store's commit, the metrics."""

    store: SessionStore
    records: OwnedRecords
    planner: AppendPlanner
    metrics: ServiceMetrics

    async def append_held(
        self,
        owner: str,
        session_id: str,
        seq: int,
        observations: Sequence[Observation],
        announcement: Announcement | None = None,
    ) -> SessionReply:
        """The reply to the batch that starts at ``seq``, applied once; the session's lock must be held.
        ``announcement``: the append was announced to the planner (``AppendPlanner.announced``)."""
        while True:
            # a new batch needs neither stored replies nor retained observations
            record = await self.records.one(owner, session_id)
            if seq < record.next_seq:
                record = await self.records.since(owner, session_id, seq, record)
            predictor = await self.records.predictor(record.version)
            change = await self.planner.plan(predictor, Append(record, seq, observations), announcement)
            if isinstance(change, SessionReply):
                return change
            if await self.store.commit(session_id, record.next_seq, change.update):
                self.metrics.applied(record.mode, "append", change.applied)
                return change.reply
            # another worker moved this session on: read it again, answer as a retry or a conflict
