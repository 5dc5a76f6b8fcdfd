"""Live sums in the stores: added when, and only when, a commit that settled forecasts is applied."""

from __future__ import annotations

import math
import struct

import pytest

from service.live.scores import Settled
from service.live.sums import from_fields, horizon_report
from service.stores import StoreLimits
from service.stores.redis import RedisSessionStore
from service.stores.redis_live import add_live, live_key
from tests.service.store_records import BARS, MakeStore, record, update

pytestmark = pytest.mark.anyio

LEVELS = (0.1, 0.5, 0.9)
ONE = Settled.from_rows(LEVELS, 2, {1: [1, 0.01, 0.02, 0.03, 1, 0.05, 0.04]})
BOTH = Settled.from_rows(LEVELS, 2, {1: [1, 0.01, 0.02, 0.03, 1, 0.05, 0.04], 2: [2, 0.1, 0.2, 0.3, 1, 0.5, 0.25]})


async def test_an_applied_commit_adds_its_scores_and_a_refused_one_adds_none(make_store: MakeStore):
    store = make_store()
    await store.create(record())
    scored = update(4, (BARS[0],), reply_seq=3, scores=BOTH, issued=b"kept")
    assert await store.commit("s1", 3, scored)
    assert not await store.commit("s1", 3, scored)  # the seq moved on: refused, nothing added
    assert (await store.get("s1")).issued == b"kept"  # type: ignore[union-attr]
    assert await store.commit("s1", 4, update(5, (BARS[1],), reply_seq=4, scores=ONE))
    sums = (await store.live_sums()).sums
    assert sorted(sums) == [("latent-v", "latent", 1), ("latent-v", "latent", 2)]
    first = sums[("latent-v", "latent", 1)]
    assert (first.count, first.inside, first.since) == (2, 2, 2.5)
    assert first.pinball == pytest.approx({0.1: 0.02, 0.5: 0.04, 0.9: 0.06})
    shown = horizon_report(2, sums[("latent-v", "latent", 2)])
    assert shown["pinball"] == pytest.approx(0.6 / 6)
    assert shown["coverage"] == 0.5 and shown["mae_ratio"] == pytest.approx(2.0)
    assert (await store.get("s1")).issued == b"kept"  # type: ignore[union-attr]  # None left it as it was


async def test_a_resent_live_add_of_one_commit_is_added_once(redis_server: str, redis_prefix: str):
    store = RedisSessionStore(redis_server, StoreLimits(60.0, 10, 5, 2), prefix=redis_prefix)
    try:
        for _ in range(2):
            await add_live(store._commands, redis_prefix, "s1", 4, "v", "latent", ONE, 7.0)
        await add_live(store._commands, redis_prefix, "s1", 5, "v", "latent", ONE, 8.0)
        sums = (await store.live_sums()).sums[("v", "latent", 1)]
    finally:
        await store.close()
    assert (sums.count, sums.since) == (2, 7.0)


async def test_fields_of_another_shape_are_skipped() -> None:
    assert from_fields({"stray": "1", "v|latent|x|n": "2"}).sums == {}


async def test_a_commit_adds_to_the_horizons_it_settled_alone(make_store: MakeStore):
    store = make_store()
    await store.create(record())
    assert await store.commit("s1", 3, update(4, (BARS[0],), reply_seq=3, scores=ONE))  # horizon 2 settled none
    sums = (await store.live_sums()).sums
    assert sorted(sums) == [("latent-v", "latent", 1)]
    assert sums[("latent-v", "latent", 1)].totals == pytest.approx([1, 0.01, 0.02, 0.03, 1, 0.05, 0.04])


async def test_redis_keeps_one_field_per_version_and_mode_and_still_reads_the_earlier_fields(
    redis_server: str, redis_prefix: str
):
    store = RedisSessionStore(redis_server, StoreLimits(60.0, 10, 5, 2), prefix=redis_prefix)
    live = live_key(redis_prefix)
    try:
        # the earlier layout: a field per sum, added to by HINCRBYFLOAT
        earlier = {"n": 3, "p0.1": 0.5, "p0.5": 0.25, "p0.9": 0.125, "inside": 2, "abs": 1.5, "walk": 3.0}
        for name, value in (earlier | {"since": 1.0}).items():
            await store._commands.call("HSET", live, f"v|latent|1|{name}", value)
        for seq in (4, 5):
            await add_live(store._commands, redis_prefix, "s1", seq, "v", "latent", BOTH, 7.0 + seq)
        fields = await store._commands.call("HKEYS", live)
        sums = (await store.live_sums()).sums
    finally:
        await store.close()
    assert sorted(f.decode() for f in fields) == sorted(
        [*(f"v|latent|1|{n}" for n in earlier), "v|latent|1|since", "v|latent|sums"]
    )
    first, second = sums[("v", "latent", 1)], sums[("v", "latent", 2)]
    assert first.totals == pytest.approx([5, 0.52, 0.29, 0.185, 4, 1.6, 3.08])
    assert (first.since, second.since) == (1.0, 11.0)  # the earliest of the two layouts', then the first add's
    assert second.totals == pytest.approx([4, 0.2, 0.4, 0.6, 2, 1.0, 0.5])


async def test_a_field_of_another_shape_reads_as_no_sums(redis_server: str, redis_prefix: str):
    store = RedisSessionStore(redis_server, StoreLimits(60.0, 10, 5, 2), prefix=redis_prefix)
    try:
        for value in (b"\x00" * 20, struct.pack("<2d", math.nan, 1.0), struct.pack("<d", 3.0) + b"\x00" * 64):
            await store._commands.call("HSET", live_key(redis_prefix), "v|latent|sums", value)
            assert (await store.live_sums()).sums == {}
        await add_live(store._commands, redis_prefix, "s1", 4, "v", "latent", ONE, 7.0)  # started again
        sums = (await store.live_sums()).sums
    finally:
        await store.close()
    assert sorted(sums) == [("v", "latent", 1)] and sums[("v", "latent", 1)].count == 1
