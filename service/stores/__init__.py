"""Session stores: where a session's record lives between requests.

``SessionStore`` is the protocol; ``MemorySessionStore`` keeps records in this
process (TTL, a bound on their number, least recently used dropped first);
``RedisSessionStore`` keeps them in Redis (one server or a cluster), shared by
several workers and surviving a restart. All pass the same tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from service.config import Settings
from service.live.pairs import PairedLosses
from service.live.sums import LiveSums
from service.stores.records import SessionRecord, SessionUpdate, StoredReply, StoreLimits

__all__ = ["SessionRecord", "SessionStore", "SessionUpdate", "StoreLimits", "StoredReply", "build_store"]

# called with a reason ("ttl" or "capacity") and how many sessions were dropped
EvictionListener = Callable[[str, int], None]


class SessionStore(Protocol):
    """Records by session id, each replaced only by compare-and-set on ``next_seq``."""

    kind: str
    limits: StoreLimits

    async def create(self, record: SessionRecord) -> bool:
        """Store a new record; at ``max_sessions``, its owner's least recently used one is dropped.

        False, and nothing stored or dropped, if the record's owner already holds
        ``max_sessions_per_owner`` sessions; ``UnavailableError`` if the store is
        full and none of its sessions is the owner's (another's is never dropped).
        """

    async def get(
        self, session_id: str, observations: int | None = 0, replies: bool = True, owner: str | None = None
    ) -> SessionRecord | None:
        """The record, or None if there is none (or it expired); counts as a use.

        With ``owner``, a record of another owner is None as well, untouched and
        found at the cost of a missing one: its existence shows in no answer and
        no timing.

        Its ``retained`` holds the last ``observations`` kept (all of them for
        None), and its ``replies`` the stored replies unless ``replies`` is
        False, all read in the same atomic step as the rest of the record.
        """

    async def get_many(self, session_ids: Sequence[str], owner: str | None = None) -> list[SessionRecord | None]:
        """``get(session_id, 0, False, owner)`` of each, in one call: the records as a new batch reads them.

        Each record is read atomically; the reads of different sessions need not be one step.
        """

    async def commit(self, session_id: str, expected_seq: int, update: SessionUpdate) -> bool:
        """Apply ``update`` if the record's ``next_seq`` is ``expected_seq``; False otherwise."""

    async def commit_many(self, commits: Sequence[tuple[str, int, SessionUpdate]]) -> list[bool]:
        """``commit(session_id, expected_seq, update)`` of each, in one call, each an atomic compare-and-set
        of its own (a failure of the store may leave some applied: their retries are answered as such)."""

    async def delete(self, session_id: str) -> bool:
        """Remove the record; False if there was none."""

    async def count(self) -> int:
        """Sessions open now."""

    async def owned(self, owner: str) -> int:
        """Sessions open now that belong to ``owner``."""

    async def versions_in_use(self) -> dict[str, int]:
        """Sessions open now on each model version: the versions a registry prune must keep."""

    async def live_sums(self) -> LiveSums:
        """The live scores of settled forecasts, summed per model version, mode and horizon by every commit
        that settled some (``SessionUpdate.scores``), over every process sharing the store."""

    async def paired_losses(self) -> PairedLosses:
        """The last loss differences of sessions' models less their shadows' per pair and horizon
        (``SessionUpdate.shadow_scores``), over every process sharing the store."""

    async def ping(self) -> None:
        """Return if the store answers; ``UnavailableError`` otherwise."""

    async def close(self) -> None:
        """Release connections."""


def store_limits(settings: Settings) -> StoreLimits:
    return StoreLimits(
        ttl_seconds=settings.session_ttl_seconds,
        max_sessions=settings.max_sessions,
        retained_observations=settings.retained_observations,
        retained_replies=settings.retained_replies,
        # without keys every caller is the one anonymous owner: max_sessions is its bound
        max_sessions_per_owner=settings.max_sessions_per_key if settings.auth_enabled else None,
    )


def build_store(settings: Settings, on_evict: EvictionListener | None = None) -> SessionStore:
    """The store named by ``settings.store``."""
    limits = store_limits(settings)
    if settings.store == "redis":
        from service.stores.redis import RedisSessionStore

        return RedisSessionStore(
            settings.redis_url,
            limits,
            prefix=settings.redis_prefix,
            timeout=settings.redis_timeout_seconds,
            on_evict=on_evict,
            cluster=settings.redis_cluster,
        )
    from service.stores.memory import MemorySessionStore

    return MemorySessionStore(limits, on_evict=on_evict)
