"""Where work runs: ``in_thread`` for one call, ``in_loop_or_thread`` by its size, ``MicroBatcher`` for
concurrent requests run as one batch.

A model step for many streams costs far less than as many steps of one, and
so does everything around it that works on arrays: stepping the sessions that
post at the same time as one batch spends the fixed cost of each call once per
batch, not once per request.

A request hands its item to the batcher under a key (the model it needs) and
awaits its own result. A request may announce itself when it starts (before it
reads its session or waits for a lock: ``announced``) and is then on its way
until it submits its item or leaves.

A lone item runs at once, in its own request, as a batch of one: when no batch
of its key is running or waiting, no other announced request is on its way and
no batch started since the event loop last came round. A lone request waits
for nobody, not even a turn of the loop. Otherwise the item is gathered: if no
batch of that key is running, a batch starts at the event loop's next turn
with what is waiting by then (the requests of a burst, which the loop runs one
after another in the same turn, the first alone, the others seeing that a
batch started in this turn); else the item joins the next batch, which starts
when the running one ends, when it holds ``max_size`` items, or
``wait_seconds`` after its first item, whichever comes first. A batch is
``work(key, items)``; it returns one result or exception per item, given to
that item's request.

Where work runs is decided here, by its size (``in_loop_or_thread``): work on
at most ``inline_up_to`` units (the caller says what a unit is and counts them)
runs on the event loop, because handing it to a worker thread costs more than
it does (the thread waits for the GIL while the loop serves other requests);
larger work runs in a worker thread, so that the loop keeps serving meanwhile.
A gathered batch runs in a task of its own, a turn after it is formed, not in
the callback that forms it: the appends that arrive meanwhile wait for it to
end and then start together, so a batch under load holds more of them. A lone
batch runs in its request's own coroutine (a cancelled request leaves the
batcher as it found it; ``close`` waits for the gathered batches only).

Order and exactly-once are the callers' business: a session posts one item at
a time (its lock is held until its result is committed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio.to_thread

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
I = TypeVar("I")  # noqa: E741 (the item type, beside K and R)
R = TypeVar("R")

# one result per item, in order; an exception is raised in that item's request only
BatchWork = Callable[[K, list[I]], Sequence[R | Exception]]


def settle(futures: Sequence[asyncio.Future[R]], outcomes: Sequence[R | BaseException]) -> None:
    """Each future given its outcome: the exception it raises, or its result. A future already done (its
    caller was cancelled) is left as it is."""
    for future, outcome in zip(futures, outcomes, strict=True):
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


async def in_thread(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a worker thread: model work and file reads stay off the event loop."""
    return await anyio.to_thread.run_sync(function, *args)


async def in_loop_or_thread(function: Callable[..., T], size: int, inline_up_to: int, *args: Any) -> T:
    """``function(*args)`` on the event loop if its work's ``size`` is at most ``inline_up_to``, else in a thread."""
    if size <= inline_up_to:
        return function(*args)
    return await in_thread(function, *args)


@dataclass
class _Queue(Generic[I, R]):
    """The items of one key waiting for a batch, and its batches running."""

    waiting: list[tuple[I, asyncio.Future[R]]] = field(default_factory=list)
    running: int = 0
    timer: asyncio.Handle | None = None  # the batch's start, at the loop's next turn or after the wait


class Announcement:
    """A request on its way to ``MicroBatcher.submit``, counted by its batcher until it is withdrawn: when
    it submits, or when it leaves its ``with`` block, by any exception or cancellation."""

    def __init__(self, withdraw: Callable[[], None]) -> None:
        self._withdraw: Callable[[], None] | None = withdraw

    def withdraw(self) -> None:
        """No longer on its way; a second call does nothing."""
        withdraw = self._withdraw
        if withdraw is not None:
            self._withdraw = None
            withdraw()

    def __enter__(self) -> Announcement:
        return self

    def __exit__(self, *exc: object) -> None:
        self.withdraw()


class MicroBatcher(Generic[K, I, R]):
    """Gathers items by key into batches of at most ``max_size``, each run by ``work``.

    ``size`` counts a batch's units of work (default: its items), ``inline_up_to`` is how many run on the
    event loop (``in_loop_or_thread``; default: none, every batch in a thread).
    """

    def __init__(
        self,
        work: BatchWork[K, I, R],
        wait_seconds: float,
        max_size: int,
        on_batch: Callable[[int], None] | None = None,
        size: Callable[[list[I]], int] = len,
        inline_up_to: int = -1,
    ) -> None:
        assert max_size >= 1 and wait_seconds >= 0, (max_size, wait_seconds)
        self.work = work
        self.wait_seconds = wait_seconds
        self.max_size = max_size
        self._on_batch = on_batch
        self._size = size
        self._inline_up_to = inline_up_to
        self._queues: dict[K, _Queue[I, R]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_way = 0  # announced requests that have not submitted nor left
        self._started_this_turn = False  # a batch started since the event loop last came round

    @property
    def on_way(self) -> int:
        """Announced requests that have neither submitted nor left."""
        return self._on_way

    @property
    def idle(self) -> bool:
        """Nothing announced, waiting or running."""
        return self._on_way == 0 and not self._queues

    def announced(self) -> Announcement:
        """A request on its way to ``submit``, from now until it submits (passing the announcement) or leaves
        the ``with`` block it opens."""
        self._on_way += 1
        return Announcement(self._withdrawn)

    async def submit(self, key: K, item: I, announcement: Announcement | None = None) -> R:
        """The result of ``item``, computed alone at once or in a batch with the other items of ``key``;
        ``announcement``, the caller's own, is withdrawn."""
        if announcement is not None:
            announcement.withdraw()
        queue = self._queues.get(key)
        if queue is None and self._on_way == 0 and not self._started_this_turn:
            return await self._alone(key, item)
        loop = asyncio.get_running_loop()
        queue = queue or self._queues.setdefault(key, _Queue())
        future: asyncio.Future[R] = loop.create_future()
        queue.waiting.append((item, future))
        if len(queue.waiting) >= self.max_size:
            self._start(key, queue)
        elif queue.running == 0:
            # the requests that arrived with this one reach here in this turn of the loop
            queue.timer = queue.timer or loop.call_soon(self._start, key, queue)
        elif queue.timer is None:
            queue.timer = loop.call_later(self.wait_seconds, self._start, key, queue)
        return await future

    async def close(self) -> None:
        """Wait for the gathered batches that are running (a lone one runs in its own request)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _withdrawn(self) -> None:
        self._on_way -= 1

    async def _alone(self, key: K, item: I) -> R:
        """``item`` run as a batch of one in the caller's own coroutine: the items that come meanwhile wait."""
        queue: _Queue[I, R] = self._queues.setdefault(key, _Queue())
        queue.running += 1
        try:
            [result] = await self._outcomes(key, [item])
        finally:
            queue.running -= 1
            self._next(key, queue)
        if isinstance(result, Exception):
            raise result
        return result

    def _new_turn(self) -> None:
        self._started_this_turn = False

    def _start(self, key: K, queue: _Queue[I, R]) -> None:
        if queue.timer is not None:
            queue.timer.cancel()
            queue.timer = None
        if not queue.waiting:
            return
        batch, queue.waiting = queue.waiting[: self.max_size], queue.waiting[self.max_size :]
        queue.running += 1
        task = asyncio.get_running_loop().create_task(self._run(key, queue, batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: K, queue: _Queue[I, R], batch: list[tuple[I, asyncio.Future[R]]]) -> None:
        try:
            results = await self._outcomes(key, [item for item, _ in batch])
        finally:
            queue.running -= 1
        settle([future for _, future in batch], results)
        self._next(key, queue)

    async def _outcomes(self, key: K, items: list[I]) -> Sequence[R | Exception]:
        """``work(key, items)`` where its size puts it; its exception as every item's outcome."""
        if not self._started_this_turn:
            # a request that submits later in this turn is one of a burst: it is gathered
            self._started_this_turn = True
            asyncio.get_running_loop().call_soon(self._new_turn)
        if self._on_batch is not None:
            self._on_batch(len(items))
        try:
            results = await in_loop_or_thread(self.work, self._size(items), self._inline_up_to, key, items)
            assert len(results) == len(items), f"{len(results)} results for {len(items)} items"
        except Exception as exc:
            return [exc] * len(items)
        return results

    def _next(self, key: K, queue: _Queue[I, R]) -> None:
        """After a batch of ``key``: the next one starts if it may, an idle key is forgotten."""
        if queue.waiting and (queue.running == 0 or len(queue.waiting) >= self.max_size):
            self._start(key, queue)
        elif not queue.waiting and queue.running == 0 and self._queues.get(key) is queue:
            del self._queues[key]  # an unloaded model leaves nothing behind
