"""``SessionLocks``: one asyncio lock per session in use, so that the requests to one session run one at a time.

A single append holds its session's lock; a bulk append holds the locks of all
its sessions at once (``hold_many``), taken in one order (sorted ids), so that two
requests holding some of the same sessions cannot wait for each other. A lock
exists only while someone holds or awaits it: a process serving many sessions
keeps no lock for those at rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager


class SessionLocks:
    """Locks by session id, made on first use and dropped when their last user leaves."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def hold(self, key: str) -> _Held:
        """The lock of ``key``, held in the ``async with`` block this opens."""
        return _Held(self, key)

    @asynccontextmanager
    async def hold_many(self, keys: Iterable[str]) -> AsyncIterator[None]:
        """The locks of ``keys`` (each once), taken in sorted order and held together."""
        joined: list[str] = []
        taken: list[asyncio.Lock] = []
        try:
            for key in sorted(set(keys)):
                lock = self._join(key)
                joined.append(key)
                # an uncontended lock is taken without a turn of the event loop
                await lock.acquire()
                taken.append(lock)
            yield
        finally:
            for lock in taken:
                lock.release()
            for key in joined:
                self._leave(key)

    def __len__(self) -> int:
        return len(self._locks)

    def _join(self, key: str) -> asyncio.Lock:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        return lock

    def _leave(self, key: str) -> None:
        lock, users = self._locks[key]
        if users == 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)


class _Held:
    """``SessionLocks.hold``: an object rather than a generator, because every append goes through it."""

    def __init__(self, locks: SessionLocks, key: str) -> None:
        self._locks = locks
        self._key = key
        self._lock: asyncio.Lock | None = None

    async def __aenter__(self) -> None:
        lock = self._locks._join(self._key)
        try:
            await lock.acquire()  # an uncontended lock is taken without a turn of the event loop
        except BaseException:  # cancelled while waiting for it
            self._locks._leave(self._key)
            raise
        self._lock = lock

    async def __aexit__(self, *exc: object) -> None:
        assert self._lock is not None
        self._lock.release()
        self._locks._leave(self._key)
