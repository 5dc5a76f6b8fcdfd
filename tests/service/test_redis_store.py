"""The Redis store beyond what every store does: its upgrade, workers and round trips, on one server and a cluster."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace

import numpy as np
import pytest
import redis

from latentcast.errors import UnavailableError
from models.series import Observation
from service.metrics import ServiceMetrics
from service.model_pool import ModelPool
from service.sessions.service import AppendItem, SessionService
from service.stores import StoredReply, StoreLimits
from service.stores.redis import RedisSessionStore
from tests.service.redis_legacy import write_legacy
from tests.service.store_records import BARS, record, update
from tests.support.processes import free_port
from training.registry import Registry

pytestmark = pytest.mark.anyio

THREADS = 16


@pytest.fixture(params=["redis", pytest.param("redis-cluster", marks=pytest.mark.slow)])
def redis_at(request: pytest.FixtureRequest) -> tuple[str, bool]:
    """The URL of a real redis-server or Redis Cluster, and whether it is a cluster."""
    cluster = request.param == "redis-cluster"
    return request.getfixturevalue("redis_cluster" if cluster else "redis_server"), cluster


@pytest.fixture
def raw(redis_server: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server)
    yield client
    client.close()


async def test_an_upgrade_reads_every_session_of_the_earlier_layout(redis_server: str, redis_prefix: str, raw):
    replies = tuple(StoredReply(seq, bytes(16), b'{"n": %d}' % seq) for seq in (1, 2, 3))
    timed = Observation(close=1.5, time="2024-01-03")
    old = [
        record("a1", owner="alice", calibration=b"offsets\x00", replies=replies),
        record("a2", owner="alice", retained=(*BARS, timed, *BARS)),
        record("b1", owner="bob", retained=()),
    ]
    for stored in old:
        write_legacy(raw, redis_prefix, stored, ttl_ms=60_000, calibration=stored.session_id != "a2")
    store = RedisSessionStore(redis_server, StoreLimits(60.0, 10, 5, 2, 2), prefix=redis_prefix)
    try:
        # every field as it was, the observations and replies cut to this store's bounds
        a1 = await store.get("a1", observations=None)
        assert a1 == replace(old[0], retained_count=3, replies=replies[1:])
        a2 = await store.get("a2", observations=None)
        assert a2 == replace(old[1], retained=(BARS[2], timed, *BARS), retained_count=5)
        assert await store.get("b1", observations=None) == replace(old[2], retained_count=0)
        # nothing of the earlier layout is left, and the expiries were kept
        assert raw.keys(f"{redis_prefix}:session:*") == [] and not raw.exists(f"{redis_prefix}:sessions")
        assert 0 < raw.pttl(f"{redis_prefix}:{{a1}}") <= 60_000
        # they count towards the bounds, and go on as any other session
        assert (await store.count(), await store.owned("alice"), await store.owned("bob")) == (3, 2, 1)
        assert not await store.create(record("a3", owner="alice"))
        assert await store.commit("a2", 3, update(4, (BARS[0],), reply_seq=3))
        assert await store.versions_in_use() == {"latent-20260101T000000-a1b2c3": 2, "latent-v": 1}
        assert await store.delete("b1") and await store.count() == 2
    finally:
        await store.close()


async def test_two_stores_upgrading_at_once_move_each_session_once(redis_server: str, redis_prefix: str, raw):
    for n in range(300):
        write_legacy(raw, redis_prefix, record(f"s{n}", owner=f"o{n % 3}"), ttl_ms=60_000)
    stores = [RedisSessionStore(redis_server, StoreLimits(60.0, 1000, 5, 2), prefix=redis_prefix) for _ in range(2)]
    try:
        counts = await asyncio.gather(*(store.count() for store in stores))
        assert counts == [300, 300]
        assert [await stores[0].owned(f"o{n}") for n in range(3)] == [100, 100, 100]
        got = await stores[1].get("s7", observations=None)
        assert got == replace(record("s7", owner="o1"), retained_count=3)
    finally:
        for store in stores:
            await store.close()


def test_appends_from_16_threads_are_each_applied_exactly_once(redis_at: tuple[str, bool], redis_prefix: str):
    """Sixteen workers (a thread, an event loop and a store each) append to the same sessions at once."""
    url, cluster = redis_at
    limits = StoreLimits(60.0, 100, 1000, 2)
    sessions, appends = ["s1", "s2"], 10

    async def open_all() -> None:
        store = RedisSessionStore(url, limits, prefix=redis_prefix, cluster=cluster)
        for session_id in sessions:
            assert await store.create(record(session_id, retained=()))
        await store.close()

    async def worker(n: int) -> None:
        store = RedisSessionStore(url, limits, prefix=redis_prefix, cluster=cluster)
        for i in range(appends):
            for session_id in sessions:
                value = float(1000 * n + i)
                while True:  # a lost compare-and-set reads again, as the session service does
                    current = await store.get(session_id)
                    assert current is not None
                    seq = current.next_seq
                    if await store.commit(session_id, seq, update(seq + 1, (Observation(close=value),))):
                        break
        await store.close()

    asyncio.run(open_all())
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            asyncio.run(worker(n))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    async def check() -> None:
        store = RedisSessionStore(url, limits, prefix=redis_prefix, cluster=cluster)
        expected = sorted(float(1000 * n + i) for n in range(THREADS) for i in range(appends))
        for session_id in sessions:
            stored = await store.get(session_id, observations=None)
            assert stored is not None and stored.next_seq == 3 + THREADS * appends
            assert sorted(o.close for o in stored.retained) == expected
        await store.close()

    asyncio.run(check())


async def test_commands_issued_together_go_to_redis_together(redis_at: tuple[str, bool], redis_prefix: str):
    """The items of a bulk request (gathered reads, then gathered commits) cost one pipeline each."""
    url, cluster = redis_at
    store = RedisSessionStore(url, StoreLimits(60.0, 100, 5, 2), prefix=redis_prefix, cluster=cluster)
    try:
        ids = [f"s{n}" for n in range(32)]  # spread over the cluster's three masters
        for session_id in ids:
            await store.create(record(session_id))
        before = store.pipelines_sent
        found = await asyncio.gather(*(store.get(session_id) for session_id in ids))
        assert [r.next_seq for r in found if r is not None] == [3] * 32
        applied = await asyncio.gather(*(store.commit(i, 3, update(4, (BARS[0],))) for i in ids))
        assert applied == [True] * 32
        assert store.pipelines_sent - before == 2
        # each item's answer is its own: a stale commit among them fails alone
        mixed = await asyncio.gather(store.commit("s0", 3, update(5)), store.commit("s1", 4, update(5)))
        assert list(mixed) == [False, True]
    finally:
        await store.close()


async def test_redis_keeps_each_session_in_one_key_of_its_own_slot(redis_at: tuple[str, bool], redis_prefix: str):
    url, cluster = redis_at
    store = RedisSessionStore(url, StoreLimits(60.0, 10, 5, 2), prefix=redis_prefix, cluster=cluster)
    raw = redis.RedisCluster.from_url(url) if cluster else redis.Redis.from_url(url)
    try:
        await store.create(record("s1", retained=(BARS[1], Observation(close=98.0))))
        key = f"{redis_prefix}:{{s1}}"
        assert raw.hget(key, "state") == record().state
        assert 0 < raw.pttl(key) <= 60_000
        # closes only: the other columns are left out when no observation has them
        assert raw.hkeys(key) and b"extras" not in raw.hkeys(key) and b"times" not in raw.hkeys(key)
        assert raw.hstrlen(key, "closes") == 2 * 8
        assert await store.commit("s1", 3, update(4, (BARS[0],)))
        assert raw.hstrlen(key, "extras") == 3 * 32
    finally:
        raw.close()
        await store.close()


async def test_an_unreachable_cluster_is_unavailable():
    port = free_port()
    store = RedisSessionStore(f"redis://127.0.0.1:{port}/0", StoreLimits(60.0, 10, 5, 2), timeout=0.5, cluster=True)
    for call in (store.ping(), store.get("s1"), store.create(record())):
        with pytest.raises(UnavailableError, match=r"^session store is unavailable: redis \w+$"):
            await call
    await store.close()


@asynccontextmanager
async def session_service(
    redis_at: tuple[str, bool], redis_prefix: str, registry: Registry
) -> AsyncIterator[tuple[SessionService, RedisSessionStore, ModelPool]]:
    """The session service of the registry's champions on a Redis store (a server or a cluster), closed after."""
    url, cluster = redis_at
    store = RedisSessionStore(url, StoreLimits(60.0, 100, 50, 4), prefix=redis_prefix, cluster=cluster)
    pool = ModelPool(registry, idle_seconds=60)
    pool.refresh()
    service = SessionService(store, pool, ServiceMetrics(pool), max_batch=20, max_history=500)
    try:
        yield service, store, pool
    finally:
        await service.close()
        await store.close()


async def test_a_bulk_append_through_the_session_service_costs_a_few_round_trips(
    redis_at: tuple[str, bool], redis_prefix: str, registry: Registry, closes: list[float]
):
    history = [Observation(close=c) for c in closes[:20]]
    async with session_service(redis_at, redis_prefix, registry) as (service, store, _):
        ids = [(await service.open("owner", history)).session_id for _ in range(24)]
        items = [AppendItem(session_id, 20, [Observation(close=closes[20])]) for session_id in ids]
        before = store.pipelines_sent
        replies = await service.append_many("owner", items)
        assert [getattr(reply, "next_seq", reply) for reply in replies] == [21] * len(ids)
        assert store.pipelines_sent - before == 2  # the items' reads, then their commits
        again = await service.append_many("owner", items)  # retries: answered from the stored replies
        assert [getattr(reply, "next_seq", reply) for reply in again] == [21] * len(ids)


async def test_states_a_bulk_append_writes_as_arrays_read_back_from_redis_as_any_state(
    redis_at: tuple[str, bool], redis_prefix: str, registry: Registry, closes: list[float]
):
    async with session_service(redis_at, redis_prefix, registry) as (service, _, pool):
        opened = [await service.open("owner", [Observation(c) for c in closes[:20]]) for _ in range(8)]
        ids = [reply.session_id for reply in opened]
        for seq in range(20, 26):  # one close each: stepped as arrays
            items = [AppendItem(session_id, seq, [Observation(closes[seq])]) for session_id in ids]
            replies = await service.append_many("owner", items)
        retried = await service.append_many("owner", items)  # rebuilt from the reply bodies stored in Redis
        assert [reply.to_json() for reply in retried] == [reply.to_json() for reply in replies]  # type: ignore[union-attr]
        # two closes each: the one-by-one path (the torch forward) reads the states the arrays wrote
        items = [AppendItem(session_id, 26, [Observation(c) for c in closes[26:28]]) for session_id in ids]
        want = pool.get(opened[0].model.version).forecast_history([Observation(c) for c in closes[:28]])
        assert want is not None
        for reply in await service.append_many("owner", items):
            assert not isinstance(reply, Exception) and reply.forecast is not None
            assert reply.forecast.as_of_seq == want.as_of_seq == 27
            np.testing.assert_allclose(reply.forecast.log_return, want.log_return, atol=1e-5)
