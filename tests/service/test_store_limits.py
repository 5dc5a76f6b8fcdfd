"""The bounds of every session store: what it retains, when sessions expire, how many it holds, and per owner.

On the memory store, a real redis-server and a real Redis Cluster (the ``make_store`` fixture).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from latentcast.errors import UnavailableError
from models.series import Observation
from tests.service.store_records import BARS, MakeStore, record, update

pytestmark = pytest.mark.anyio


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
