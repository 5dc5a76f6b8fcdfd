"""Session rules: seq, retries, overlaps, whole-batch validation, pinning and migration."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest

from latentcast.errors import ConflictError, DataError, LimitError, NotFoundError
from models.series import Forecast, Observation
from service.metrics import ServiceMetrics
from service.model_pool import ModelPool
from service.sessions.service import SessionReply, SessionService
from service.stores import StoreLimits
from service.stores.memory import MemorySessionStore
from tests.factories import tiny_checkpoint
from training.registry import Registry

pytestmark = pytest.mark.anyio

OWNER = "owner-a"


def build(registry: Registry, store: MemorySessionStore | None = None, **limits: Any) -> SessionService:
    pool = ModelPool(registry, idle_seconds=60)
    pool.refresh()
    values: dict[str, Any] = {
        "ttl_seconds": 60.0,
        "max_sessions": 100,
        "retained_observations": 50,
        "retained_replies": 4,
    }
    values.update(limits)
    store = store or MemorySessionStore(StoreLimits(**values))
    return SessionService(store, pool, ServiceMetrics(pool), max_batch=20, max_history=500)


@pytest.fixture
def service(registry: Registry) -> SessionService:
    return build(registry)


@pytest.fixture
def obs(closes: list[float]) -> list[Observation]:
    return [Observation(close=c) for c in closes]


def assert_same_forecast(got: Forecast | None, want: Forecast | None) -> None:
    assert got is not None and want is not None
    assert got.as_of_seq == want.as_of_seq
    np.testing.assert_allclose(got.log_return, want.log_return, atol=1e-4)
    np.testing.assert_allclose(got.price, want.price, rtol=1e-4)


async def offline(service: SessionService, reply: SessionReply, history: list[Observation]) -> Forecast | None:
    return service.pool.get(reply.model.version).forecast_history(history)


async def test_opening_warms_the_session_on_its_history(service: SessionService, obs):
    empty = await service.open(OWNER)
    assert (empty.next_seq, empty.forecast, empty.model.mode) == (0, None, "latent")
    assert len(empty.session_id) == 32
    one = await service.open(OWNER, obs[:1])
    assert one.next_seq == 1 and one.forecast is None
    warm = await service.open(OWNER, obs[:30], mode="ar")
    assert warm.next_seq == 30 and warm.model.mode == "ar"
    assert_same_forecast(warm.forecast, await offline(service, warm, obs[:30]))


@pytest.mark.parametrize("mode", ["latent", "ar"])
async def test_one_observation_per_call_equals_the_whole_history(service: SessionService, obs, mode):
    reply = await service.open(OWNER, obs[:3], mode=mode)
    for seq in range(3, 120):
        reply = await service.append(OWNER, reply.session_id, seq, obs[seq : seq + 1])
    assert reply.next_seq == 120
    assert_same_forecast(reply.forecast, await offline(service, reply, obs[:120]))


async def test_a_retried_batch_gets_the_same_reply_and_is_applied_once(service: SessionService, obs):
    opened = await service.open(OWNER, obs[:10])
    first = await service.append(OWNER, opened.session_id, 10, obs[10:15])
    again = await service.append(OWNER, opened.session_id, 10, obs[10:15])
    assert again == first and again.next_seq == 15
    later = await service.append(OWNER, opened.session_id, 15, obs[15:16])
    assert await service.append(OWNER, opened.session_id, 10, obs[10:15]) == first  # an older retry too
    info = await service.read(OWNER, opened.session_id)
    assert info.reply == later and info.retained == 16
    assert_same_forecast(later.forecast, await offline(service, later, obs[:16]))


async def test_an_overlap_equal_to_what_was_applied_applies_only_the_new_tail(service: SessionService, obs):
    opened = await service.open(OWNER, obs[:10])
    reply = await service.append(OWNER, opened.session_id, 7, obs[7:14])
    assert reply.next_seq == 14
    assert_same_forecast(reply.forecast, await offline(service, reply, obs[:14]))


async def test_a_gap_is_a_conflict_naming_the_expected_seq(service: SessionService, obs):
    opened = await service.open(OWNER, obs[:10])
    with pytest.raises(ConflictError) as caught:
        await service.append(OWNER, opened.session_id, 12, obs[12:13])
    assert caught.value.message == "seq 12 leaves a gap: the session expects seq 10"
    assert caught.value.details == {"expected_seq": 10, "reason": "gap"}
    assert (await service.read(OWNER, opened.session_id)).reply == opened


async def test_an_overlap_with_other_values_is_a_conflict(service: SessionService, obs):
    opened = await service.open(OWNER, obs[:10])
    changed = [*obs[8:9], Observation(close=obs[9].close + 1), *obs[10:11]]
    with pytest.raises(ConflictError) as caught:
        await service.append(OWNER, opened.session_id, 8, changed)
    assert caught.value.message == "observation 9 differs from the one already applied; the session expects seq 10"
    assert caught.value.details == {"expected_seq": 10, "reason": "conflict"}
    assert (await service.read(OWNER, opened.session_id)).reply == opened


async def test_a_replay_older_than_what_is_kept_is_a_conflict(registry: Registry, obs):
    service = build(registry, retained_observations=5, retained_replies=1)
    opened = await service.open(OWNER, obs[:10])
    await service.append(OWNER, opened.session_id, 10, obs[10:12])
    await service.append(OWNER, opened.session_id, 12, obs[12:13])
    with pytest.raises(ConflictError) as caught:
        await service.append(OWNER, opened.session_id, 10, obs[10:12])
    assert caught.value.message == (
        "observations 10 to 11 were already applied, with these values, and their reply is no longer kept; "
        "the session expects seq 13"
    )
    assert caught.value.details["reason"] == "already_applied"
    with pytest.raises(ConflictError) as caught:
        await service.append(OWNER, opened.session_id, 6, obs[6:14])
    assert caught.value.message == (
        "seq 6 is before the observations this session retains (from seq 8); the session expects seq 13"
    )
    assert (await service.read(OWNER, opened.session_id)).reply.next_seq == 13


async def test_a_batch_with_one_bad_observation_is_not_applied_at_all(service: SessionService, obs):
    opened = await service.open(OWNER, obs[:10])
    batch = [obs[10], Observation(close=float("nan")), obs[12]]
    with pytest.raises(DataError) as caught:
        await service.append(OWNER, opened.session_id, 10, batch)
    assert caught.value.message == "observation 11: close is nan; values must be finite"
    assert (await service.read(OWNER, opened.session_id)).reply == opened
    reply = await service.append(OWNER, opened.session_id, 10, obs[10:13])
    assert_same_forecast(reply.forecast, await offline(service, reply, obs[:13]))


async def test_batches_and_histories_are_bounded(service: SessionService, obs):
    opened = await service.open(OWNER)
    with pytest.raises(LimitError, match=r"^batch has 21 observations; the limit is 20 \(LATENTCAST_MAX_BATCH\)$"):
        await service.append(OWNER, opened.session_id, 0, obs[:21])
    with pytest.raises(
        LimitError, match=r"^history has 501 observations; the limit is 500 \(LATENTCAST_MAX_HISTORY\)$"
    ):
        await service.open(OWNER, obs[:1] * 501)


async def test_a_session_is_invisible_to_other_owners(service: SessionService, obs):
    opened = await service.open(OWNER, obs[:10])
    message = f"no session '{opened.session_id}': it does not exist, has expired or belongs to another key"
    for call in (
        service.read("owner-b", opened.session_id),
        service.append("owner-b", opened.session_id, 10, obs[10:11]),
        service.delete("owner-b", opened.session_id),
        service.migrate("owner-b", opened.session_id),
    ):
        with pytest.raises(NotFoundError) as caught:
            await call
        assert caught.value.message == message
    await service.delete(OWNER, opened.session_id)
    with pytest.raises(NotFoundError, match=r"^no session"):
        await service.read(OWNER, opened.session_id)


async def test_two_workers_posting_one_batch_apply_it_once(registry: Registry, obs):
    store = MemorySessionStore(StoreLimits(60.0, 100, 50, 4))
    first, second = build(registry, store), build(registry, store)  # no lock in common, only the store
    opened = await first.open(OWNER, obs[:10])
    replies = await asyncio.gather(*(w.append(OWNER, opened.session_id, 10, obs[10:14]) for w in (first, second)))
    assert replies[0] == replies[1] and replies[0].next_seq == 14
    assert (await second.read(OWNER, opened.session_id)).retained == 14


async def test_sessions_stay_on_their_version_until_migrated(tmp_path, obs):
    registry = Registry(tmp_path / "artifacts")
    old = registry.register(tiny_checkpoint("latent", seed=1)).version
    registry.promote(old)
    service = build(registry, retained_observations=40)
    opened = await service.open(OWNER, obs[:30])
    await service.append(OWNER, opened.session_id, 30, obs[30:50])
    new = registry.register(tiny_checkpoint("latent", seed=9)).version
    registry.promote(new)
    assert service.pool.refresh().changed == {"latent": new}
    pinned = await service.append(OWNER, opened.session_id, 50, obs[50:51])
    assert pinned.model.version == old
    assert (await service.open(OWNER)).model.version == new

    moved = await service.migrate(OWNER, opened.session_id)
    assert (moved.previous.version, moved.reply.model.version) == (old, new)
    assert (moved.replayed, moved.first_replayed_seq, moved.reply.next_seq) == (40, 11, 51)
    want = service.pool.get(new).forecast_history(obs[11:51])
    assert want is not None
    assert_same_forecast(moved.reply.forecast, Forecast(50, want.horizons, want.quantiles, want.log_return, want.price))
    after = await service.append(OWNER, opened.session_id, 51, obs[51:52])
    assert after.model.version == new and after.forecast is not None and after.forecast.as_of_seq == 51

    same = await service.migrate(OWNER, opened.session_id, version=new)
    assert (same.replayed, same.first_replayed_seq, same.reply) == (0, 52, after)


async def test_posts_to_one_session_run_one_at_a_time_and_to_different_sessions_together(
    service: SessionService, obs, monkeypatch
):
    a, b = await service.open(OWNER, obs[:10]), await service.open(OWNER, obs[:10])
    predictor = service.pool.get(a.model.version)
    original = predictor.advance_stored
    spans: list[tuple[float, float]] = []

    def slow_advance(steps):
        start = time.perf_counter()
        time.sleep(0.2)  # in a worker thread: the event loop stays free
        result = original(steps)
        spans.append((start, time.perf_counter()))
        return result

    monkeypatch.setattr(predictor, "advance_stored", slow_advance)
    same = await asyncio.gather(
        service.append(OWNER, a.session_id, 10, obs[10:12]), service.append(OWNER, a.session_id, 12, obs[12:13])
    )
    assert [r.next_seq for r in same] == [12, 13]
    first, second = spans
    assert second[0] >= first[1]  # serialised
    spans.clear()
    await asyncio.gather(
        service.append(OWNER, a.session_id, 13, obs[13:14]), service.append(OWNER, b.session_id, 10, obs[10:11])
    )
    first, second = sorted(spans)
    assert second[0] < first[1]  # overlapping
