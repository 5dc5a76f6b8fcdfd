"""Soak with faults: many sessions streamed by a misbehaving client, then checked against offline replays.

    .venv/bin/python -m bench.soak --store memory
    .venv/bin/python -m bench.soak --store redis --servers 2
    .venv/bin/python -m bench.soak --store redis --servers 2 --retrain
    .venv/bin/python -m bench.soak --store redis --servers 2 --via bulk     # or --via stream
    .venv/bin/python -m bench.soak --store redis --redis-cluster --servers 2

Trains small models on the bundled prices into a fresh registry (two versions
per mode; the first is champion), starts ``latentcast serve`` on loopback ports
(and a redis-server for ``--store redis`` unless ``--redis-url`` names one; a
3-master Redis Cluster with ``--redis-cluster``),
opens ``--sessions`` sessions (ar and latent in turn) on four API keys and feeds each real daily bars
with random retries, overlaps, dropped connections and out-of-order batches: one
append per request (``--via rest``, ``bench/soak_client.py``), or the batches of
a key's sessions together in bulk requests or WebSocket messages (``--via bulk``
or ``stream``, ``bench/soak_market.py``). With ``--retrain``, ``latentcast retrain``
runs against the same registry while the sessions stream; the service picks up
its champions by polling, and the second half of the sessions opens on them.

Then every session's seq, forecast and retained observations are compared with
an offline replay (the retained ones through a migration to another version),
and a table says what was sent, applied, retried, dropped, refused, and whether
anything was lost or applied twice. Bounded by ``--seconds`` and the counts;
traffic goes to 127.0.0.1 only. Exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from latentcast_client import AsyncClient, ClientSettings

from bench.redis_processes import redis_cluster, redis_server
from bench.soak_check import applied_by, verify
from bench.soak_client import FaultyStream, StreamStats, wire
from bench.soak_market import VIAS, MarketClient
from bench.soak_setup import KEYS, SoakPlan, bars, prepare_registry, run_retrain_command, service_env, services
from models.config import MODES
from models.predictor import Observation
from training.registry import Registry

OPEN_TIMEOUT_SECONDS = 30.0
VIA_NAMES = {"rest": "one per request", "bulk": "in bulk requests", "stream": "in WebSocket messages"}


async def open_streams(
    url: str, plan: SoakPlan, observations: Sequence[list[Observation]], first: int
) -> list[FaultyStream]:
    """Open sessions ``first..first+len(observations)-1`` on the ar and latent champions in turn, each
    warmed on its first ``plan.warm`` bars, on the four keys in turn."""
    streams = []
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(AsyncClient(ClientSettings(url, key, OPEN_TIMEOUT_SECONDS))) for key in KEYS
        ]
        for i, obs in enumerate(observations, start=first):
            history = [wire(o) for o in obs[: plan.warm]]
            session = await clients[i % len(KEYS)].open(history, mode=MODES[i % len(MODES)])
            streams.append(FaultyStream(session.session_id, obs, plan.warm, KEYS[i % len(KEYS)], plan.seed * 1000 + i))
    return streams


async def feed(
    streams: Sequence[FaultyStream],
    urls: Sequence[str],
    plan: SoakPlan,
    deadline: float,
    hold_last: asyncio.Event | None = None,
    via: str = "rest",
) -> None:
    """Run every stream to its end (or the deadline), all at once; their last batches wait for ``hold_last``."""
    if via in VIAS:
        by_key: dict[str | None, list[FaultyStream]] = {}
        for stream in streams:
            by_key.setdefault(stream.key, []).append(stream)
        markets = [MarketClient(mine, urls, via, plan.seed * 1000 + k) for k, mine in enumerate(by_key.values())]
        await asyncio.gather(*(market.run(deadline, plan.rates, hold_last) for market in markets))
        return
    # the client's retries are the stream's own (it counts its waits for a server that is away)
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            key: [
                await stack.enter_async_context(AsyncClient(ClientSettings(url, key, OPEN_TIMEOUT_SECONDS, 0)))
                for url in urls
            ]
            for key in {s.key for s in streams}
        }
        await asyncio.gather(*(s.run(clients[s.key], deadline, plan.rates, hold_last) for s in streams))


@dataclass
class SoakResult:
    """The streams, their checks against offline replays, and what the servers counted."""

    streams: list[FaultyStream]
    held: list[int]  # next_seq of each session as the service reports it at the end
    mismatches: list[str]
    applied_by_servers: float | None  # None when a server restarted (its counters restarted too)
    seconds: float
    retrain: dict[str, object] | None = None
    via: str = "rest"

    @property
    def totals(self) -> StreamStats:
        total = StreamStats()
        for stream in self.streams:
            total.add(stream.stats)
        return total

    @property
    def expected_applied(self) -> int:
        return sum(len(s.observations) - s.warm for s in self.streams)

    @property
    def lost(self) -> int:
        """Observations acknowledged to the client that the session does not hold."""
        return sum(max(0, s.next_seq - c) for s, c in zip(self.streams, self.held, strict=True))

    @property
    def applied_twice(self) -> int:
        held = sum(max(0, c - len(s.observations)) for s, c in zip(self.streams, self.held, strict=True))
        counted = 0 if self.applied_by_servers is None else int(self.applied_by_servers) - self.expected_applied
        return max(held, counted, 0)


def table(store: str, servers: int, result: SoakResult) -> str:
    t = result.totals
    dropped = f"{t.dropped} ({t.dropped_applied})" if result.via == "rest" else str(t.dropped)
    rows = [
        ("store", f"{store}, {servers} server process{'es' if servers > 1 else ''}"),
        (
            "appends sent",
            {"rest": "one per request", "bulk": "in bulk requests", "stream": "over WebSockets"}[result.via],
        ),
        ("sessions", str(len(result.streams))),
        ("observations sent (retries, overlaps, drops included)", str(t.sent)),
        ("observations applied (acknowledged)", f"{t.applied} of {result.expected_applied}"),
        ("retried batches (same reply each time)", str(t.retries)),
        ("overlapping batches", str(t.overlaps)),
        ("dropped connections (of them applied all the same, REST only)", dropped),
        ("out-of-order batches (409s they got)", f"{t.out_of_order} ({t.conflicts})"),
        ("waits for a server or store that was away", str(t.waits)),
        ("client-side problems", str(len(t.problems))),
        ("mismatches vs offline replay", str(len(result.mismatches))),
        ("lost", str(result.lost)),
        ("applied twice", str(result.applied_twice)),
        ("seconds", f"{result.seconds:.1f}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def passed(result: SoakResult) -> bool:
    t = result.totals
    complete = t.applied == result.expected_applied and t.out_of_order == t.conflicts
    return complete and not (t.problems or result.mismatches or result.lost or result.applied_twice)


# the soak -----------------------------------------------------------------------


async def soak(urls: Sequence[str], registry: Registry, plan: SoakPlan, retrain: bool, via: str = "rest") -> SoakResult:
    """Open the sessions, stream them ``via`` REST, bulk or the WebSocket (with a retrain meanwhile if asked),
    check them against replays."""
    started = time.monotonic()
    deadline = started + plan.seconds
    observations = bars(plan)
    first_wave = observations[: plan.sessions // 2] if retrain else observations
    async with httpx.AsyncClient(base_url=urls[0], timeout=30) as client:
        streams = await open_streams(urls[0], plan, first_wave, 0)
        # with a retrain, the first sessions send their last batch only once the new champions serve
        promoted = asyncio.Event() if retrain else None
        tasks = [asyncio.create_task(feed(streams, urls, plan, deadline, promoted, via))]
        report: dict[str, object] | None = None
        if retrain:
            assert promoted is not None
            before = registry.champions()
            report = await asyncio.to_thread(run_retrain_command, registry.root)
            await wait_for_champions(client, report, deadline)
            promoted.set()
            report["seconds_into_soak"] = round(time.monotonic() - started, 1)
            report["streaming_meanwhile"] = sum(not s.done for s in streams)
            late = await open_streams(urls[0], plan, observations[len(first_wave) :], len(first_wave))
            versions = [
                (await client.get(f"/v1/sessions/{s.session_id}", headers=s.headers)).json()["model"]["version"]
                for s in late
            ]
            report["sessions_on_new_champions"] = sum(v not in before.values() for v in versions)
            streams += late
            tasks.append(asyncio.create_task(feed(late, urls, plan, deadline, via=via)))
        await asyncio.gather(*tasks)
    mismatches, held = await asyncio.to_thread(verify, urls[0], streams, registry, plan)
    applied = await asyncio.to_thread(applied_by, urls)
    return SoakResult(streams, held, mismatches, applied, time.monotonic() - started, report, via)


async def wait_for_champions(client: httpx.AsyncClient, job: dict[str, object], deadline: float) -> None:
    """Return once the service serves the champions the job promoted (its registry poll saw them)."""
    modes = job.get("modes", [])
    assert isinstance(modes, list)
    promoted = {m["mode"]: m["champion_after"] for m in modes if m["promoted"]}
    while time.monotonic() < deadline:
        served = (await client.get("/readyz")).json().get("champions", {})
        if all(served.get(mode) == version for mode, version in promoted.items()):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("the service did not pick up the new champions before the deadline")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["memory", "redis"], default="memory")
    parser.add_argument("--redis-url", help="an existing Redis (default: start a redis-server on a free port)")
    parser.add_argument("--redis-cluster", action="store_true", help="the Redis is a cluster (started if no URL)")
    parser.add_argument("--servers", type=int, default=1, help="service processes sharing the store (redis only)")
    parser.add_argument("--sessions", type=int, default=SoakPlan.sessions)
    parser.add_argument("--observations", type=int, default=SoakPlan.observations, help="per session")
    parser.add_argument("--seconds", type=float, default=SoakPlan.seconds, help="stop streaming after this long")
    parser.add_argument("--retrain", action="store_true", help="run a retrain that promotes new champions meanwhile")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--via", choices=["rest", *VIAS], default="rest", help="how appends are sent")
    args = parser.parse_args(argv)
    if args.servers > 1 and args.store == "memory":
        parser.error("several servers need --store redis")
    plan = SoakPlan(sessions=args.sessions, observations=args.observations, seconds=args.seconds, seed=args.seed)
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        print("training the first versions ...", file=sys.stderr)
        registry = prepare_registry(Path(folder) / "artifacts")
        redis_url = args.redis_url
        if args.store == "redis" and not redis_url:
            redis_url = stack.enter_context(redis_cluster() if args.redis_cluster else redis_server())
        poll = 1.0 if args.retrain else 0
        env = service_env(registry, args.store, redis_url, plan, poll, cluster=args.redis_cluster)
        urls = stack.enter_context(services(env, args.servers, Path(folder)))
        print(f"streaming {plan.sessions} sessions to {', '.join(urls)} ...", file=sys.stderr)
        result = asyncio.run(soak(urls, registry, plan, args.retrain, args.via))
    print(table(f"{args.store} cluster" if args.redis_cluster else args.store, args.servers, result))
    if result.retrain is not None:
        print(f"retrain: {retrain_summary(result.retrain)}")
    for problem in (result.totals.problems + result.mismatches)[:20]:
        print(f"  {problem}")
    ok = passed(result) and (result.retrain is None or retrain_overlapped(result.retrain))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def retrain_overlapped(job: dict[str, object]) -> bool:
    """The new champions were served while sessions streamed, and new sessions opened on them."""
    return bool(job.get("streaming_meanwhile")) and bool(job.get("sessions_on_new_champions"))


def retrain_summary(job: dict[str, object]) -> str:
    modes = job.get("modes", [])
    assert isinstance(modes, list)
    promoted = ", ".join(f"{m['mode']} {m['champion_before']} -> {m['champion_after']}" for m in modes if m["promoted"])
    return (
        f"job {job['job_id']} {job['status']} in {job['seconds']} s, promoted: {promoted or 'nothing'}; served "
        f"{job['seconds_into_soak']} s into the soak while {job['streaming_meanwhile']} sessions were streaming "
        f"(they stay on their version); {job['sessions_on_new_champions']} sessions opened on the new champions"
    )


if __name__ == "__main__":
    sys.exit(main())
