"""Where work runs: ``in_thread`` for one call, ``in_loop_or_thread`` by its size, ``MicroBatcher`` for
concurrent requests run as one batch.

A model step for many streams costs far less than as many steps of one, and
so does everything around it that works on arrays: stepping the sessions that
post at the same time as one batch spends the fixed cost of each call once per
batch, not once per request.

A request hands its item to the batcher under a key (the model it needs) and
awaits its own result. If no batch of that key is running, a batch starts at
the event loop's next turn with what is waiting by then: the requests that
arrived together, and a lone request waits for nobody. Otherwise the item joins
the next batch, which starts when the running one ends, when it holds
``max_size`` items, or ``wait_seconds`` after its first item, whichever comes
first. A batch is ``work(key, items)``; it returns one result or exception per
item, given to that item's request.

Where work runs is decided here, by its size (``in_loop_or_thread``): work on
at most ``inline_up_to`` units (the caller says what a unit is and counts them)
runs on the event loop, because handing it to a worker thread costs more than
it does (the thread waits for the GIL while the loop serves other requests);
larger work runs in a worker thread, so that the loop keeps serving meanwhile.
A batch runs in a task of its own, a turn after it is formed, not in the
callback that forms it: the appends that arrive meanwhile wait for it to end
and then start together, so a batch under load holds more of them.

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

    async def submit(self, key: K, item: I) -> R:
        """The result of ``item``, computed in a batch with the other items of ``key``."""
        loop = asyncio.get_running_loop()
        queue = self._queues.setdefault(key, _Queue())
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
        """Wait for the batches that are running."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

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
        if self._on_batch is not None:
            self._on_batch(len(batch))
        results: Sequence[R | Exception]
        items = [item for item, _ in batch]
        try:
            results = await in_loop_or_thread(self.work, self._size(items), self._inline_up_to, key, items)
            assert len(results) == len(batch), f"{len(results)} results for {len(batch)} items"
        except Exception as exc:
            results = [exc] * len(batch)
        finally:
            queue.running -= 1
        settle([future for _, future in batch], results)
        if queue.waiting and (queue.running == 0 or len(queue.waiting) >= self.max_size):
            self._start(key, queue)
        elif not queue.waiting and queue.running == 0 and self._queues.get(key) is queue:
            del self._queues[key]  # an unloaded model leaves nothing behind
