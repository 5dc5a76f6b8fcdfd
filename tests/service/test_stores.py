"""Every session store passes the same tests: in memory, on a real redis-server and on a real Redis Cluster.

The stores' bounds (retention, expiry, capacity, owners) are tested in ``test_store_limits.py``.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
import redis

from latentcast.errors import UnavailableError
from models.series import Observation
from service.stores import StoreLimits
from service.stores.memory import MemorySessionStore
from service.stores.records import observation_from_bytes, observation_to_bytes
from service.stores.redis import RedisSessionStore
from tests.service.store_records import BARS, MakeStore, record, update
from tests.support.processes import free_port

pytestmark = pytest.mark.anyio


def test_observations_round_trip_through_bytes_exactly():
    for obs in [*BARS, Observation(close=1e-300, high=1.0000000000000002, time="é")]:
        assert observation_from_bytes(observation_to_bytes(obs)) == obs


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
