"""Bytes per open session in the memory store and in Redis, and 100,000 sessions in the memory store.

    .venv/bin/python -m bench.memory [--sessions 100000] [--sample 1000]

Sessions of the default model (latent GRU) are built as the service builds
them: opened on a history of real IBM closes, then fed ``retained_replies``
one-close batches, each with its stored reply. Two shapes: a fresh session (50
closes) and a full one (as many closes as ``retained_observations`` keeps, 1,000
by default). Measured:

- memory store: Python heap bytes per session (tracemalloc over ``--sample``
  sessions), and the process's resident memory after ``--sessions`` full
  sessions (goal: 100,000 within 1 GiB);
- Redis: ``used_memory`` per session over ``--sample`` sessions, against a
  redis-server started for the bench on a free loopback port, and against a
  3-master Redis Cluster (``used_memory`` of every node); and on both, the
  appends per second of ``--streams`` full sessions each appending one close
  per round, the rounds' appends gathered (as a bulk request's are).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path

import redis

from bench.harness import default_checkpoint
from data import sources
from models.config import ModelConfig
from models.predictor import Predictor
from models.series import Observation, SeriesState
from service.config import Settings
from service.sessions.replies import reply_body
from service.stores import SessionRecord, SessionStore, SessionUpdate, StoredReply, StoreLimits, store_limits
from service.stores.memory import MemorySessionStore
from service.stores.records import batch_digest
from service.stores.redis import RedisSessionStore
from tests.support.redis_processes import redis_cluster, redis_server

FRESH = 50  # closes in a fresh session's history
GIB = 1024**3


class Sessions:
    """Records and updates shaped like the service's, for one predictor and one shape of session."""

    def __init__(self, predictor: Predictor, closes: list[float], history: int, replies: int) -> None:
        self.history = [Observation(close=c) for c in closes[:history]]
        state = predictor.advance(SeriesState(), self.history)
        self.state = predictor.state_to_bytes(state)
        self.version = predictor.version
        self.updates = []
        for i in range(replies):
            new = [Observation(close=closes[history + i])]
            state = predictor.advance(state, new)
            reply = StoredReply(seq=history + i, digest=batch_digest(new), body=reply_body(state))
            self.updates.append(
                SessionUpdate(
                    next_seq=state.n_obs,
                    state=predictor.state_to_bytes(state),
                    mode="latent",
                    version=self.version,
                    updated=time.time(),
                    appended=tuple(new),
                    reply=reply,
                )
            )

    async def open(self, store: SessionStore, session_id: str) -> None:
        now = time.time()
        record = SessionRecord(
            session_id=session_id,
            owner="",
            mode="latent",
            version=self.version,
            ticker=None,
            next_seq=len(self.history),
            state=self.state,
            retained=tuple(self.history),
            created=now,
            updated=now,
        )
        await store.create(record)
        for update in self.updates:
            assert await store.commit(session_id, update.next_seq - 1, update)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=100_000, help="full sessions held in the memory store")
    parser.add_argument("--sample", type=int, default=1000, help="sessions measured per store and shape")
    parser.add_argument("--streams", type=int, default=64, help="sessions appending at once in the Redis rate")
    parser.add_argument("--rounds", type=int, default=50, help="appends per session in the Redis rate")
    args = parser.parse_args(argv)
    return asyncio.run(run(args))


async def run(args: argparse.Namespace) -> int:
    settings = Settings(max_sessions=max(args.sessions, args.sample))
    limits = store_limits(settings)
    closes = sources.bundled(["IBM"])["close"].tolist()
    with tempfile.TemporaryDirectory() as folder:
        from training.registry import Registry

        registry = Registry(Path(folder) / "artifacts")
        version = registry.register(default_checkpoint(ModelConfig(scaling="global"))).version
        predictor = registry.predictor(version)
    shapes = {
        "fresh": Sessions(predictor, closes, FRESH, limits.retained_replies),
        "full": Sessions(predictor, closes, limits.retained_observations, limits.retained_replies),
    }
    print(
        f"cores {os.cpu_count()}; default model (latent {predictor.config.cell}, "
        f"hidden {predictor.config.hidden_size}), state {len(shapes['full'].state)} bytes; "
        f"each session has {limits.retained_replies} stored replies; "
        f"fresh = {FRESH} closes retained, full = {limits.retained_observations}"
    )
    print(f"{'store':<8}{'session':<8}{'bytes/session':>15}")
    for name, shape in shapes.items():
        per = await heap_bytes(MemorySessionStore(limits), shape, args.sample)
        print(f"{'memory':<8}{name:<8}{per:>15,.0f}")
    rates = {}
    for kind, launch in (("redis", redis_server), ("cluster", redis_cluster)):
        with launch(append_only=False) as url:
            for name, shape in shapes.items():
                per = await redis_bytes(url, kind == "cluster", limits, shape, args.sample, name)
                print(f"{kind:<8}{name:<8}{per:>15,.0f}")
            rates[kind] = await append_rate(url, kind == "cluster", limits, shapes["full"], args.streams, args.rounds)
    print(
        f"appends/s, {args.streams} full sessions appending one close per round, gathered: one redis-server "
        f"{rates['redis']:,.0f}, 3-master cluster {rates['cluster']:,.0f} "
        f"(cluster / one server {rates['cluster'] / rates['redis']:.2f}x, all on this machine's cores)"
    )
    rss, seconds = await resident(MemorySessionStore(limits), shapes["full"], args.sessions)
    print(
        f"memory store holding {args.sessions:,} full sessions: {rss / GIB:.3f} GiB more resident memory "
        f"({rss / args.sessions:,.0f} bytes/session, built in {seconds:.0f} s; goal: 100,000 within 1 GiB)"
    )
    return 0


async def heap_bytes(store: MemorySessionStore, shape: Sessions, count: int) -> float:
    """Python heap bytes per session, traced over ``count`` sessions."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(count):
        await shape.open(store, f"{i:032d}")
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    await store.close()
    return (after - before) / count


async def resident(store: MemorySessionStore, shape: Sessions, count: int) -> tuple[float, float]:
    """Resident bytes added by ``count`` sessions (peak RSS delta), and the seconds taken."""
    gc.collect()
    before = _peak_rss()
    started = time.perf_counter()
    for i in range(count):
        await shape.open(store, f"{i:032d}")
    gc.collect()
    seconds = time.perf_counter() - started
    assert await store.count() == count
    return _peak_rss() - before, seconds


def _peak_rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0  # Linux reports KiB


async def redis_bytes(url: str, cluster: bool, limits: StoreLimits, shape: Sessions, count: int, name: str) -> float:
    """Redis ``used_memory`` per session over ``count`` sessions (every node's, on a cluster)."""
    before = _used_memory(url, cluster)
    store = RedisSessionStore(url, limits, prefix=f"bench-{name}", cluster=cluster)
    for i in range(count):
        await shape.open(store, f"{i:032d}")
    after = _used_memory(url, cluster)
    await store.close()
    return (after - before) / count


async def append_rate(
    url: str, cluster: bool, limits: StoreLimits, shape: Sessions, streams: int, rounds: int
) -> float:
    """Appends per second: ``streams`` sessions of ``shape`` each appending one close per round, gathered."""
    store = RedisSessionStore(url, limits, prefix="bench-rate", cluster=cluster)
    ids = [f"rate-{i:027d}" for i in range(streams)]
    for session_id in ids:
        await shape.open(store, session_id)
    last = shape.updates[-1]
    started = time.perf_counter()
    for n in range(rounds):
        update = replace(last, next_seq=last.next_seq + n + 1, appended=(Observation(close=100.0 + n),))
        applied = await asyncio.gather(*(store.commit(i, update.next_seq - 1, update) for i in ids))
        assert all(applied)
    seconds = time.perf_counter() - started
    await store.close()
    return streams * rounds / seconds


def _used_memory(url: str, cluster: bool) -> int:
    if cluster:
        nodes = redis.RedisCluster.from_url(url)
        total = sum(int(i["used_memory"]) for i in nodes.info("memory", target_nodes=nodes.ALL_NODES).values())
        nodes.close()
        return total
    raw = redis.Redis.from_url(url)
    used = int(raw.info("memory")["used_memory"])
    raw.close()
    return used


if __name__ == "__main__":
    sys.exit(main())
