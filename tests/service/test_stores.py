"""Every session store passes the same tests: in memory, on a real redis-server and on a real Redis Cluster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
import redis

from bench.harness import free_port
from data.errors import UnavailableError
from models.predictor import Observation
from service.stores import SessionRecord, SessionStore, SessionUpdate, StoredReply, StoreLimits
from service.stores.memory import MemorySessionStore
from service.stores.records import batch_digest, batch_digests, observation_from_bytes, observation_to_bytes
from service.stores.redis import RedisSessionStore

pytestmark = pytest.mark.anyio

MakeStore = Callable[..., SessionStore]
# these tests are about what the stores keep, not how fast: a loaded machine may be slow to connect to Redis
TIMEOUT = 10.0
BARS = [
    Observation(close=101.25, open=100.5, high=102.0, low=99.75, volume=3.1e6, time="2024-01-02"),
    Observation(close=102.5),
    Observation(close=99.0, volume=0.0),
]


@pytest.fixture
def evictions() -> dict[str, int]:
    return {}


@pytest.fixture(params=["memory", "redis", pytest.param("redis-cluster", marks=pytest.mark.slow)])
async def make_store(request: pytest.FixtureRequest, evictions: dict[str, int]) -> AsyncIterator[MakeStore]:
    """Builds stores of the parametrised kind with the given limits; closes them after the test."""
    made: list[SessionStore] = []

    def count(reason: str, n: int) -> None:
        evictions[reason] = evictions.get(reason, 0) + n

    def make(
        ttl_seconds: float = 60.0,
        max_sessions: int = 100,
        retained_observations: int = 5,
        retained_replies: int = 2,
        max_sessions_per_owner: int | None = None,
    ) -> SessionStore:
        limits = StoreLimits(ttl_seconds, max_sessions, retained_observations, retained_replies, max_sessions_per_owner)
        store: SessionStore
        if request.param == "memory":
            store = MemorySessionStore(limits, on_evict=count)
        else:
            cluster = request.param == "redis-cluster"
            url = request.getfixturevalue("redis_cluster" if cluster else "redis_server")
            prefix = request.getfixturevalue("redis_prefix")
            store = RedisSessionStore(url, limits, prefix=prefix, on_evict=count, cluster=cluster, timeout=TIMEOUT)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


def record(session_id: str = "s1", **fields: Any) -> SessionRecord:
    values: dict[str, Any] = {
        "session_id": session_id,
        "owner": "0123abcd",
        "mode": "latent",
        "version": "latent-20260101T000000-a1b2c3",
        "ticker": "IBM",
        "next_seq": 3,
        "state": b"LCSE\x00\x01binary\xff",
        "retained": tuple(BARS),
        "created": 1700000000.25,
        "updated": 1700000000.5,
    }
    values.update(fields)
    return SessionRecord(**values)


def update(next_seq: int, appended: tuple[Observation, ...] = (), reply_seq: int | None = None, **fields: Any):
    reply = None
    if reply_seq is not None:
        reply = StoredReply(seq=reply_seq, digest=batch_digest(appended), body=b'{"next_seq": %d}' % next_seq)
    values: dict[str, Any] = {"state": b"state-%d" % next_seq, "mode": "latent", "version": "latent-v", "updated": 2.5}
    values.update(fields)
    return SessionUpdate(next_seq=next_seq, appended=appended, reply=reply, **values)


def test_observations_round_trip_through_bytes_exactly():
    for obs in [*BARS, Observation(close=1e-300, high=1.0000000000000002, time="é")]:
        assert observation_from_bytes(observation_to_bytes(obs)) == obs


def test_digests_made_together_are_each_batch_s_own():
    untimed = [replace(bar, time=None) for bar in BARS]
    batches = [untimed, [], untimed[1:2], untimed[::-1], [Observation(close=7, open=7, high=8, low=6)]]
    assert batch_digests(batches) == [batch_digest(batch) for batch in batches]
    assert len(set(batch_digests(batches))) == len(batches)
    with_times = [*batches, BARS]  # a time label: each batch digested on its own
    assert batch_digests(with_times) == [batch_digest(batch) for batch in with_times]
    assert batch_digests([]) == []


async def test_a_record_reads_back_as_it_was_written(make_store: MakeStore):
    store = make_store()
    await store.create(record())
    assert await store.get("s1", observations=None) == record(retained_count=3)
    assert await store.get("s1") == record(retained=(), retained_count=3)
    assert await store.get("s1", observations=2) == record(retained=tuple(BARS[1:]), retained_count=3)
    assert await store.get("nope") is None


async def test_commit_applies_only_on_the_expected_seq(make_store: MakeStore):
    store = make_store()
    await store.create(record())
    assert not await store.commit("s1", 2, update(4, (BARS[0],)))
    assert await store.get("s1", None) == record(retained_count=3)
    assert await store.commit("s1", 3, update(4, (BARS[0],), reply_seq=3))
    stored = await store.get("s1", None)
    assert stored is not None
    assert (stored.next_seq, stored.state, stored.version, stored.updated) == (4, b"state-4", "latent-v", 2.5)
    assert stored.retained == (*BARS, BARS[0])
    assert [r.seq for r in stored.replies] == [3]
    assert not await store.commit("s1", 3, update(5, (BARS[1],)))
    assert not await store.commit("missing", 0, update(1))


async def test_many_reads_and_commits_in_one_call_each_answer_as_one_would(make_store: MakeStore):
    store = make_store()
    for session_id, owner in (("s1", "alice"), ("s2", "alice"), ("s3", "bob")):
        await store.create(record(session_id, owner=owner))
    found = await store.get_many(["s2", "nope", "s3", "s1"], owner="alice")
    assert found == [record("s2", owner="alice", retained=(), retained_count=3), None, None, found[3]]
    assert found[3] is not None and found[3].session_id == "s1" and found[3].replies == ()
    assert [r is not None for r in await store.get_many(["s3"])] == [True]
    done = await store.commit_many(
        [("s1", 3, update(4, (BARS[0],), reply_seq=3)), ("s2", 2, update(4)), ("nope", 0, update(1))]
    )
    assert done == [True, False, False]
    s1, s2 = await store.get("s1", None), await store.get("s2", None)
    assert s1 is not None and (s1.next_seq, s1.retained[-1], [r.seq for r in s1.replies]) == (4, BARS[0], [3])
    assert s2 == record("s2", owner="alice", retained_count=3)
    assert await store.commit_many([]) == [] and await store.get_many([]) == []


async def test_adaptive_offsets_are_stored_replaced_on_commit_and_otherwise_kept(make_store: MakeStore):
    store = make_store()
    await store.create(record(calibration=b"offsets-3\x00\xff"))
    stored = await store.get("s1")
    assert stored is not None and stored.calibration == b"offsets-3\x00\xff"
    assert await store.commit("s1", 3, update(4, (BARS[0],)))  # an update without offsets keeps them
    stored = await store.get("s1")
    assert stored is not None and stored.calibration == b"offsets-3\x00\xff"
    assert await store.commit("s1", 4, update(5, (BARS[1],), calibration=b"offsets-5"))
    assert not await store.commit("s1", 4, update(5, (BARS[1],), calibration=b"offsets-lost"))
    stored = await store.get("s1")
    assert stored is not None and stored.calibration == b"offsets-5"
    await store.create(record("s2"))
    plain = await store.get("s2")
    assert plain is not None and plain.calibration == b""


async def test_only_the_last_observations_and_replies_are_kept(make_store: MakeStore):
    store = make_store(retained_observations=5, retained_replies=2)
    await store.create(record())
    for seq in range(3, 7):
        assert await store.commit("s1", seq, update(seq + 1, (Observation(close=float(seq)),), reply_seq=seq))
    stored = await store.get("s1", None)
    assert stored is not None
    assert [o.close for o in stored.retained] == [99.0, 3.0, 4.0, 5.0, 6.0]
    assert [r.seq for r in stored.replies] == [5, 6]
    assert stored.first_retained_seq == 2
    assert await store.commit("s1", 7, update(7, clear_replies=True))
    stored = await store.get("s1", None)
    assert stored is not None and stored.replies == () and len(stored.retained) == 5


async def test_replies_are_read_only_when_asked_for(make_store: MakeStore):
    store = make_store(retained_replies=3)
    await store.create(record())
    for seq in range(3, 8):
        assert await store.commit("s1", seq, update(seq + 1, (Observation(close=float(seq)),), reply_seq=seq))
    full = await store.get("s1", 2)
    bare = await store.get("s1", 2, replies=False)
    assert full is not None and bare is not None
    assert [r.seq for r in full.replies] == [5, 6, 7]
    assert [r.body for r in full.replies] == [b'{"next_seq": %d}' % (seq + 1) for seq in (5, 6, 7)]
    assert bare == replace(full, replies=())
    assert await store.get("s1", replies=False) == replace(full, retained=(), replies=())


async def test_a_long_history_is_cut_to_the_bound_when_a_session_opens(make_store: MakeStore):
    store = make_store(retained_observations=2)
    await store.create(record())
    assert await store.get("s1", None) == record(retained=tuple(BARS[1:]), retained_count=2)


async def test_no_observations_are_kept_when_the_bound_is_zero(make_store: MakeStore):
    store = make_store(retained_observations=0)
    await store.create(record())
    assert await store.commit("s1", 3, update(4, (BARS[0],)))
    stored = await store.get("s1", None)
    assert stored is not None and stored.retained == ()


async def test_sessions_expire_after_their_ttl_unless_used(make_store: MakeStore, evictions: dict[str, int]):
    store = make_store(ttl_seconds=0.8)
    await store.create(record("used"))
    await store.create(record("idle"))
    for _ in range(3):
        await asyncio.sleep(0.3)
        assert await store.get("used") is not None
    assert await store.get("idle") is None
    assert await store.count() == 1
    await asyncio.sleep(0.9)
    assert await store.count() == 0
    assert evictions == {"ttl": 2}


async def test_beyond_max_sessions_the_least_recently_used_is_dropped(make_store: MakeStore, evictions):
    store = make_store(max_sessions=3)
    for name in ("a", "b", "c"):
        await store.create(record(name))
        time.sleep(0.002)  # distinct last-use times, also on the Redis server's clock
    assert await store.get("a") is not None
    await store.create(record("d"))
    assert await store.get("b") is None
    assert [await store.get(n) is not None for n in "acd"] == [True, True, True]
    assert await store.count() == 3
    assert evictions == {"capacity": 1}


async def test_an_owner_holding_the_most_sessions_it_may_is_refused_a_new_one(make_store: MakeStore, evictions):
    store = make_store(max_sessions=4, max_sessions_per_owner=2)

    async def create(session_id: str, owner: str) -> bool:
        time.sleep(0.002)  # distinct last-use times, also on the Redis server's clock
        return await store.create(record(session_id, owner=owner))

    assert await create("a1", "alice") and await create("a2", "alice") and await create("b1", "bob")
    assert not await create("a3", "alice")  # at the bound: refused, nothing dropped
    assert await store.get("a3") is None and await store.count() == 3 and evictions == {}
    assert (await store.owned("alice"), await store.owned("bob")) == (2, 1)
    assert await store.delete("a1")
    assert await create("a3", "alice")  # the slot freed by the delete
    assert await create("b2", "bob")
    with pytest.raises(UnavailableError, match=r"^the session store holds its most sessions \(4, "):
        await create("c1", "carol")  # full, and none of the sessions is carol's: nothing dropped
    assert evictions == {} and await store.count() == 4
    assert (await store.owned("alice"), await store.owned("bob"), await store.owned("carol")) == (2, 2, 0)


async def test_one_owner_never_evicts_another_owner_s_sessions(make_store: MakeStore, evictions):
    # max sessions 50, 40 per key: 40 opens by bob once pushed out 10 of alice's 20 sessions
    store = make_store(max_sessions=50, max_sessions_per_owner=40)
    for i in range(20):
        assert await store.create(record(f"a{i}", owner="alice"))
    for i in range(40):
        assert await store.create(record(f"b{i}", owner="bob"))
        time.sleep(0.002)  # distinct last-use times, also on the Redis server's clock
    # bob's opens past the bound of the store took the places of his own oldest sessions
    assert evictions == {"capacity": 10}
    assert all([await store.get(f"b{i}") is None for i in range(10)])
    assert all([await store.get(f"a{i}") is not None for i in range(20)])
    # alice, at the bound of the store, makes room from her own least recently used session
    time.sleep(0.002)
    assert await store.get("a0") is not None
    assert await store.create(record("a20", owner="alice"))
    assert evictions == {"capacity": 11}
    assert await store.get("a1") is None and await store.get("a0") is not None
    assert (await store.owned("alice"), await store.owned("bob")) == (20, 30)


async def test_an_owner_s_expired_sessions_free_their_slots(make_store: MakeStore):
    store = make_store(ttl_seconds=0.5, max_sessions_per_owner=1)
    assert await store.create(record("a1", owner="alice"))
    for _ in range(3):  # a session in use keeps its slot
        await asyncio.sleep(0.25)
        assert await store.commit("a1", 3, update(3)) and not await store.create(record("a2", owner="alice"))
    await asyncio.sleep(0.6)
    assert await store.owned("alice") == 0
    assert await store.create(record("a2", owner="alice"))


async def test_delete_removes_a_session_once(make_store: MakeStore):
    store = make_store()
    await store.create(record())
    assert await store.delete("s1")
    assert not await store.delete("s1")
    assert await store.get("s1") is None
    assert await store.count() == 0


async def test_of_two_concurrent_commits_on_one_seq_exactly_one_wins(make_store: MakeStore):
    first, second = make_store(), make_store()  # two workers on one Redis (or one process's memory)
    if isinstance(first, MemorySessionStore):
        second = first
    await first.create(record())
    results = await asyncio.gather(
        *(s.commit("s1", 3, update(4, (BARS[i % 3],))) for i, s in enumerate([first, second] * 4))
    )
    assert sorted(results) == [False] * 7 + [True]
    stored = await second.get("s1", None)
    assert stored is not None and stored.next_seq == 4 and len(stored.retained) == 4 - 3 + 3


async def test_an_unreachable_redis_is_unavailable():
    port = free_port()
    store = RedisSessionStore(f"redis://:secret@127.0.0.1:{port}/0", StoreLimits(60.0, 10, 5, 2), timeout=0.5)
    for call in (store.ping(), store.get("s1"), store.create(record())):
        with pytest.raises(UnavailableError) as caught:
            await call
        assert caught.value.message == "session store is unavailable: redis ConnectionError"
    await store.close()


async def test_another_owner_s_session_reads_as_a_missing_one_and_is_not_touched(make_store: MakeStore):
    store = make_store(ttl_seconds=0.8)
    await store.create(record("s1", owner="alice"))
    await asyncio.sleep(0.45)
    assert await store.get("s1", owner="bob") is None
    assert await store.get("s1", owner="alice", observations=None) is not None  # alice's own read renews it
    await asyncio.sleep(0.45)
    assert await store.get("s1", owner="bob") is None
    await asyncio.sleep(0.45)
    assert await store.get("s1") is None  # bob's reads renewed nothing: it expired 0.8 s after alice's


async def test_another_owner_s_session_costs_redis_what_a_missing_one_does(make_store: MakeStore, request):
    store = make_store()
    if not isinstance(store, RedisSessionStore):
        pytest.skip("the memory store answers both from one dict lookup")
    await store.create(record("s1", owner="alice"))
    stats = redis.Redis.from_url(store.url) if not store.cluster else redis.RedisCluster.from_url(store.url)

    def calls() -> dict[str, int]:
        if isinstance(stats, redis.RedisCluster):  # every node's: the cluster's
            by_node = list(stats.info("commandstats", target_nodes=redis.RedisCluster.ALL_NODES).values())
        else:
            by_node = [stats.info("commandstats")]
        counts: dict[str, int] = {}
        for info in by_node:
            for name, value in info.items():
                counts[name] = counts.get(name, 0) + int(value["calls"])
        return counts

    async def work(session_id: str) -> dict[str, int]:
        before = calls()
        assert await store.get(session_id, owner="bob") is None
        after = calls()
        ran = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
        return {name: n for name, n in ran.items() if name != "cmdstat_info"}

    try:
        await store.get("warm", owner="bob")  # the script loaded once
        # the commands Redis ran, the INFO calls aside, are the same for either id
        assert await work("s1") == await work("no-such-session") == {"cmdstat_evalsha": 1, "cmdstat_hget": 1}
    finally:
        stats.close()


async def test_the_versions_in_use_count_the_open_sessions_of_each_version(make_store: MakeStore):
    store = make_store(max_sessions=2000)
    old, new = "latent-20260101T000000-a1b2c3", "latent-20260201T000000-d4e5f6"
    assert await store.versions_in_use() == {}
    # more sessions than one slice of the Redis scan
    for n in range(1200):
        assert await store.create(record(f"s{n}", version=old if n % 3 == 0 else new))
    assert await store.versions_in_use() == {old: 400, new: 800}
    # a session moved to another version counts there; a deleted one no more
    assert await store.commit("s0", 3, update(4, version=new))
    assert await store.delete("s3")
    assert await store.versions_in_use() == {old: 398, new: 801}
