"""Micro-batching: gathered by model, bounded in size and wait, equal to one request at a time."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest

from latentcast.errors import ConflictError, NotFoundError
from models.series import Observation
from service.batching import MicroBatcher, in_loop_or_thread
from service.metrics import ServiceMetrics
from service.model_pool import ModelPool
from service.sessions.service import BatchSettings, SessionReply, SessionService
from service.stores import StoreLimits
from service.stores.memory import MemorySessionStore
from training.registry import Registry

pytestmark = pytest.mark.anyio

OWNER = "owner-a"
HELD = 5.0  # seconds a test may hold a batch before it gives up


class Recorder:
    """Batch work that records each batch and holds the first one until released."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, list[int]]] = []
        self.release = threading.Event()

    def __call__(self, key: str, items: list[int]) -> list[int | Exception]:
        first = not self.batches
        self.batches.append((key, list(items)))
        if first:
            self.release.wait(HELD)
        return [ValueError(f"item {i} is odd") if i % 2 else i * 10 for i in items]


async def test_a_lone_item_runs_at_once_and_items_that_come_meanwhile_join_one_batch():
    work = Recorder()
    batcher: MicroBatcher[str, int, int] = MicroBatcher(work, wait_seconds=HELD, max_size=100)
    first = asyncio.create_task(batcher.submit("m", 0))
    await asyncio.sleep(0.05)
    assert work.batches == [("m", [0])]  # started without waiting for company
    others = [asyncio.create_task(batcher.submit("m", i)) for i in (2, 4, 6)]
    await asyncio.sleep(0.05)
    assert len(work.batches) == 1  # waiting for the running batch
    work.release.set()
    assert await first == 0 and await asyncio.gather(*others) == [20, 40, 60]
    assert work.batches == [("m", [0]), ("m", [2, 4, 6])]


async def test_a_full_batch_starts_without_waiting_and_keys_are_never_mixed():
    work = Recorder()
    batcher: MicroBatcher[str, int, int] = MicroBatcher(work, wait_seconds=HELD, max_size=2)
    first = asyncio.create_task(batcher.submit("m", 0))
    await asyncio.sleep(0.05)
    tasks = [asyncio.create_task(batcher.submit(key, i)) for key, i in [("m", 2), ("n", 4), ("m", 6), ("m", 8)]]
    await asyncio.sleep(0.1)
    # "m" filled a batch of two while its first batch was held; "n" had none running
    assert sorted(work.batches[1:]) == [("m", [2, 6]), ("n", [4])]
    work.release.set()
    assert await first == 0 and await asyncio.gather(*tasks) == [20, 40, 60, 80]
    assert work.batches[-1] == ("m", [8])


async def test_an_item_waits_at_most_the_wait_bound_for_a_running_batch():
    work = Recorder()
    batcher: MicroBatcher[str, int, int] = MicroBatcher(work, wait_seconds=0.05, max_size=100)
    first = asyncio.create_task(batcher.submit("m", 0))
    await asyncio.sleep(0.02)
    started = time.perf_counter()
    assert await batcher.submit("m", 2) == 20
    assert time.perf_counter() - started < HELD / 2  # the first batch is still held
    assert not first.done()
    work.release.set()
    assert await first == 0


async def test_each_item_gets_its_own_exception_and_a_failed_batch_fails_all_its_items():
    work = Recorder()
    work.release.set()
    batcher: MicroBatcher[str, int, int] = MicroBatcher(work, wait_seconds=0.01, max_size=100)
    results = await asyncio.gather(*(batcher.submit("m", i) for i in range(4)), return_exceptions=True)
    assert [r if isinstance(r, int) else str(r) for r in results] == [0, "item 1 is odd", 20, "item 3 is odd"]

    def broken(key: str, items: list[int]) -> list[int | Exception]:
        raise RuntimeError("the model failed")

    failing: MicroBatcher[str, int, int] = MicroBatcher(broken, wait_seconds=0.01, max_size=100)
    results = await asyncio.gather(*(failing.submit("m", i) for i in range(3)), return_exceptions=True)
    assert [str(r) for r in results] == ["the model failed"] * 3


async def test_work_up_to_its_inline_size_runs_on_the_event_loop_larger_work_in_a_thread():
    loop_thread = threading.get_ident()
    assert await in_loop_or_thread(threading.get_ident, 64, 64) == loop_thread
    assert await in_loop_or_thread(threading.get_ident, 65, 64) != loop_thread
    sizes: list[int] = []

    def where(key: str, items: list[int]) -> list[int | Exception]:
        return [threading.get_ident()] * len(items)

    def counted(items: list[int]) -> int:
        sizes.append(sum(items))
        return sizes[-1]

    batcher: MicroBatcher[str, int, int] = MicroBatcher(where, 0.0, 100, size=counted, inline_up_to=5)
    assert await batcher.submit("m", 5) == loop_thread
    assert await batcher.submit("m", 6) != loop_thread
    assert sizes == [5, 6]


def inline(work: Recorder) -> MicroBatcher[str, int, int]:
    """A batcher whose batches run on the event loop, gathered for as long as a test takes."""
    work.release.set()
    return MicroBatcher(work, wait_seconds=HELD, max_size=100, inline_up_to=100)


async def test_a_lone_item_runs_in_its_own_request_before_the_loop_runs_anything_else():
    turns: list[str] = []
    seen: list[list[str]] = []

    def work(key: str, items: list[int]) -> list[int | Exception]:
        seen.append(list(turns))
        return [i * 10 for i in items]

    batcher: MicroBatcher[str, int, int] = MicroBatcher(work, wait_seconds=HELD, max_size=100, inline_up_to=100)
    with batcher.announced() as mine:
        asyncio.get_running_loop().call_soon(turns.append, "a turn")
        assert await batcher.submit("m", 3, mine) == 30
    assert seen == [[]]  # ran before the callback scheduled ahead of it
    assert batcher.idle


async def test_an_item_is_gathered_while_another_request_is_announced_and_the_two_run_as_one_batch():
    work = Recorder()
    batcher = inline(work)
    with batcher.announced() as other:
        assert batcher.on_way == 1
        first = asyncio.create_task(batcher.submit("m", 0))
        second = asyncio.create_task(batcher.submit("m", 2, other))
        assert [await first, await second] == [0, 20]
    assert work.batches == [("m", [0, 2])]
    assert batcher.idle


async def test_the_items_of_a_burst_after_the_first_are_gathered_into_one_batch():
    work = Recorder()
    batcher = inline(work)
    # submitted in one turn of the loop, as the requests that arrive together are
    assert await asyncio.gather(*(batcher.submit("m", i) for i in (0, 2, 4, 6))) == [0, 20, 40, 60]
    assert work.batches == [("m", [0]), ("m", [2, 4, 6])]
    await asyncio.sleep(0)  # the loop came round: the next one is alone again
    assert await batcher.submit("m", 8) == 80
    assert work.batches[-1] == ("m", [8]) and batcher.idle


async def test_an_item_submitted_in_the_turn_a_gathered_batch_starts_is_gathered_too():
    ran_in: dict[str, asyncio.Task[object] | None] = {}

    def work(key: str, items: list[int]) -> list[int | Exception]:
        ran_in[key] = asyncio.current_task()
        return [i * 10 for i in items]

    batcher: MicroBatcher[str, int, int] = MicroBatcher(work, wait_seconds=HELD, max_size=100, inline_up_to=100)
    with batcher.announced():
        first = asyncio.create_task(batcher.submit("m", 0))
        await asyncio.sleep(0)  # gathered, as another request is on its way: its batch forms at the next turn
    await asyncio.sleep(0)  # formed: it runs in a task of its own at the next turn, before this one
    second = asyncio.create_task(batcher.submit("n", 2))
    assert [await first, await second] == [0, 20]
    assert ran_in["m"] not in (None, first) and ran_in["n"] not in (None, second)
    assert batcher.idle


async def test_nothing_stays_announced_after_an_exception_or_a_cancellation():
    batcher = inline(Recorder())
    with pytest.raises(KeyError), batcher.announced():
        raise KeyError("the session")
    assert batcher.on_way == 0
    blocked = asyncio.Event()

    async def waits_for_a_lock() -> None:
        with batcher.announced() as mine:
            await blocked.wait()
            await batcher.submit("m", 0, mine)

    task = asyncio.create_task(waits_for_a_lock())
    await asyncio.sleep(0.01)
    assert batcher.on_way == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert batcher.idle
    # an item that fails alone raises in its request and leaves nothing behind
    with batcher.announced() as mine:
        with pytest.raises(ValueError, match="item 1 is odd"):
            await batcher.submit("m", 1, mine)
        assert batcher.on_way == 0
    assert batcher.idle


async def test_a_lone_item_cancelled_in_its_thread_leaves_nothing_behind_and_the_items_after_it_run():
    work = Recorder()
    batcher: MicroBatcher[str, int, int] = MicroBatcher(work, wait_seconds=HELD, max_size=100)
    first = asyncio.create_task(batcher.submit("m", 0))
    await asyncio.sleep(0.05)
    assert work.batches == [("m", [0])]  # alone, in a worker thread
    later = asyncio.create_task(batcher.submit("m", 2))
    await asyncio.sleep(0.01)
    first.cancel()
    work.release.set()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await later == 20
    assert work.batches == [("m", [0]), ("m", [2])]
    assert batcher.idle


@dataclass
class Tracked:
    """One session as the test follows it in both services."""

    next_seq: int
    ids: dict[bool, str]  # its id in the service without (False) and with (True) batching


def build(registry: Registry, batching: bool) -> SessionService:
    pool = ModelPool(registry, idle_seconds=60)
    pool.refresh()
    store = MemorySessionStore(
        StoreLimits(ttl_seconds=60.0, max_sessions=100, retained_observations=50, retained_replies=4)
    )
    return SessionService(
        store,
        pool,
        ServiceMetrics(pool),
        max_batch=20,
        max_history=500,
        batching=BatchSettings(enabled=batching, wait_seconds=0.002, max_size=8),
    )


async def test_batched_sessions_answer_as_one_request_at_a_time_does(registry: Registry, closes: list[float]):
    obs = [Observation(close=c) for c in closes]
    services = {batching: build(registry, batching) for batching in (False, True)}
    rng = random.Random(3)
    sessions = []
    for n in range(12):
        mode, warm = ("latent", "ar")[n % 2], rng.randint(0, 15)
        ids = {b: (await s.open(OWNER, obs[:warm], mode=mode)).session_id for b, s in services.items()}
        sessions.append(Tracked(warm, ids))
    for _ in range(25):
        requests = []  # (session, seq, batch): new batches, retries, gaps
        for session in sessions:
            seq, roll = session.next_seq, rng.random()
            size = 1 if roll < 0.7 else rng.randint(2, 4)
            if roll > 0.95:
                seq += 1  # a gap
            elif roll > 0.9 and seq > 3:
                seq -= 2  # an overlap with a new tail
            requests.append((session, seq, obs[seq : seq + size]))
        replies = {}
        for batching, service in services.items():
            replies[batching] = await asyncio.gather(
                *(service.append(OWNER, s.ids[batching], seq, batch) for s, seq, batch in requests),
                return_exceptions=True,
            )
        for (session, _, _), alone, batched in zip(requests, replies[False], replies[True], strict=True):
            if isinstance(alone, ConflictError):
                assert isinstance(batched, ConflictError) and batched.message == alone.message
                continue
            assert isinstance(alone, SessionReply) and isinstance(batched, SessionReply)
            assert batched.next_seq == alone.next_seq
            session.next_seq = alone.next_seq
            if alone.forecast is None:
                assert batched.forecast is None
            else:
                assert batched.forecast is not None and batched.forecast.as_of_seq == alone.forecast.as_of_seq
                np.testing.assert_allclose(batched.forecast.log_return, alone.forecast.log_return, atol=1e-6)
                np.testing.assert_allclose(batched.forecast.price, alone.forecast.price, rtol=1e-6)
    on, off = services[True].metrics.registry, services[False].metrics.registry
    count = on.get_sample_value("latentcast_append_batch_size_count")
    total = on.get_sample_value("latentcast_append_batch_size_sum")
    assert count is not None and total is not None and total > count  # some batches held more than one append
    assert off.get_sample_value("latentcast_append_batch_size_count") == 0  # off: no batches


async def test_an_append_is_announced_from_its_start_until_it_submits_whatever_becomes_of_it(
    registry: Registry, closes: list[float]
):
    obs = [Observation(close=c) for c in closes]
    service = build(registry, batching=True)
    batcher = service.planner.batcher
    assert batcher is not None
    session_id = (await service.open(OWNER, obs[:5], mode="latent")).session_id
    with pytest.raises(NotFoundError):
        await service.append(OWNER, "no-such-session", 0, obs[:1])
    with pytest.raises(ConflictError):
        await service.append(OWNER, session_id, 7, obs[7:8])  # a gap, refused by the plan
    assert batcher.idle
    async with service.locks.hold(session_id):
        waiting = asyncio.create_task(service.append(OWNER, session_id, 5, obs[5:6]))
        await asyncio.sleep(0.01)
        assert batcher.on_way == 1  # waiting for its session's lock
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    assert batcher.idle and len(service.locks) == 0  # nor does its lock stay behind
    assert (await service.append(OWNER, session_id, 5, obs[5:6])).next_seq == 6
    assert batcher.idle
