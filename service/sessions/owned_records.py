"""``OwnedRecords``: a caller's session records read from the store, and the models they are pinned to.

A session of another API key is answered exactly as one that does not exist
(``NotFoundError``, at the cost of a missing one: the store checks the owner in
the same read). A new batch reads neither the stored replies nor the retained
observations; only a batch in the past does (``since``), to answer a retry or
check an overlap.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence

from latentcast.errors import NotFoundError
from models.predictor import Predictor
from service.batching import in_thread
from service.model_pool import ModelPool
from service.stores import SessionRecord, SessionStore

SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_SHOWN_ID = 64


class OwnedRecords:
    """Reads of the caller's records from ``store``; the predictor of a record's version from ``pool``."""

    def __init__(self, store: SessionStore, pool: ModelPool) -> None:
        self.store = store
        self.pool = pool

    async def one(
        self, owner: str, session_id: str, observations: int | None = 0, replies: bool = False
    ) -> SessionRecord:
        """The caller's session, with its last ``observations`` retained (all for None), and its stored
        replies if asked for: only a batch in the past reads them (to answer a retry)."""
        valid = SESSION_ID_PATTERN.match(session_id)
        record = await self.store.get(session_id, observations, replies, owner=owner) if valid else None
        return _owned(record, owner, session_id)

    async def many(self, owner: str, session_ids: Sequence[str]) -> list[SessionRecord | NotFoundError]:
        """The caller's sessions as a new batch reads them (``one`` with its defaults), in one store call;
        ``NotFoundError`` in place of each that is not the caller's."""
        valid = [session_id for session_id in session_ids if SESSION_ID_PATTERN.match(session_id)]
        found = dict(zip(valid, await self.store.get_many(valid, owner=owner), strict=True)) if valid else {}
        results: list[SessionRecord | NotFoundError] = []
        for session_id in session_ids:
            try:
                results.append(_owned(found.get(session_id), owner, session_id))
            except NotFoundError as exc:
                results.append(exc)
        return results

    async def since(self, owner: str, session_id: str, seq: int, record: SessionRecord) -> SessionRecord:
        """For a retry or an overlap from ``seq``: the record with its replies and what it retains from ``seq``."""
        while True:
            record = await self.one(owner, session_id, record.next_seq - seq, replies=True)
            # another worker may have moved the session on between two reads: then read more
            if not (
                record.first_retained_seq <= seq < record.next_seq and len(record.retained) < record.next_seq - seq
            ):
                return record

    async def predictor(self, version: str) -> Predictor:
        # a thread only when the version must be read from disk (pinned, after a restart or an unload)
        predictor = self.pool.get_loaded(version)
        return predictor if predictor is not None else await in_thread(self.pool.get, version)


def not_found(session_id: str) -> NotFoundError:
    shown = session_id if len(session_id) <= MAX_SHOWN_ID else session_id[:MAX_SHOWN_ID] + "..."
    return NotFoundError(f"no session {shown!r}: it does not exist, has expired or belongs to another key")


def _owned(record: SessionRecord | None, owner: str, session_id: str) -> SessionRecord:
    if record is None or not hmac.compare_digest(record.owner, owner):
        raise not_found(session_id)
    return record
