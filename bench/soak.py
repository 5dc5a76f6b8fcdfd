"""Soak with faults: many sessions streamed by a misbehaving client, then checked against offline replays.

    .venv/bin/python -m bench.soak --store memory
    .venv/bin/python -m bench.soak --store redis --servers 2
    .venv/bin/python -m bench.soak --store redis --servers 2 --retrain

Trains small models on the bundled prices into a fresh registry (two versions
per mode; the first is champion), starts ``latentcast serve`` on loopback ports
(and a redis-server for ``--store redis`` unless ``--redis-url`` names one),
opens ``--sessions`` sessions (ar and latent in turn) on four API keys and feeds each real daily bars
through ``bench.soak_client.FaultyStream``: random retries, overlaps, dropped
connections and out-of-order batches. With ``--retrain``, ``latentcast retrain``
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
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.harness import ROOT, ServiceProcess, redis_server
from bench.soak_client import FaultRates, FaultyStream, StreamStats, check_against_replay
from data import sources
from models.config import MODES, ModelConfig
from models.predictor import Observation
from training.config import TrainConfig
from training.pipeline import train_and_register
from training.registry import Registry

TICKERS = ("AAPL", "GOOG", "IBM", "MSFT")
KEYS = tuple(f"soak-client-key-{i}-0123456789" for i in range(4))
ADMIN_KEY = "soak-admin-key-0123456789"
# small models: the soak is about the service, not the forecasts
MODEL = ModelConfig(conv_channels=4, hidden_size=8, horizon=3, window=10)
# barely trained (a tiny learning rate), so that a retrain surely beats them
WEAK = TrainConfig(epochs=1, lr=1e-7, streams=4, bptt=25, windows_per_epoch=128, threads=1, progress=False)
RETRAIN_ARGS = ["--source", "bundled", "--tickers", "IBM", "MSFT", "--epochs", "3", "--hidden", "8"]
RETRAIN_ARGS += ["--window", "10", "--horizon", "3", "--threads", "1", "--no-progress"]


@dataclass(frozen=True)
class SoakPlan:
    """How many sessions, how long each stream is, and how the client misbehaves."""

    sessions: int = 32
    observations: int = 300  # per session, the warm-up history included
    warm: int = 5
    seconds: float = 300.0
    retained: int = 1000  # LATENTCAST_RETAINED_OBSERVATIONS of the servers
    rates: FaultRates = field(default_factory=FaultRates)
    seed: int = 0


def bars(plan: SoakPlan) -> list[list[Observation]]:
    """Real daily bars for each session: tickers in turn, later sessions further into the history."""
    prices = sources.bundled(list(TICKERS))
    out = []
    for i in range(plan.sessions):
        rows = prices[prices["ticker"] == TICKERS[i % len(TICKERS)]].reset_index(drop=True)
        start = (i // len(TICKERS)) * plan.observations % max(1, len(rows) - plan.observations)
        chunk = rows.iloc[start : start + plan.observations]
        out.append(
            [
                Observation(
                    close=float(r["close"]),
                    high=float(r["high"]),
                    low=float(r["low"]),
                    volume=float(r["volume"]),
                    time=r["date"].date().isoformat(),
                )
                for r in chunk.to_dict("records")
            ]
        )
    return out


async def open_streams(
    client: httpx.AsyncClient, plan: SoakPlan, observations: Sequence[list[Observation]], first: int
) -> list[FaultyStream]:
    """Open sessions ``first..first+len(observations)-1`` on the ar and latent champions in turn, each
    warmed on its first ``plan.warm`` bars."""
    streams = []
    for i, obs in enumerate(observations, start=first):
        key = KEYS[i % len(KEYS)]
        history = [{k: v for k, v in vars(o).items() if v is not None} for o in obs[: plan.warm]]
        body = {"mode": MODES[i % len(MODES)], "history": history}
        opened = await client.post("/v1/sessions", json=body, headers={"X-API-Key": key})
        opened.raise_for_status()
        streams.append(FaultyStream(opened.json()["session_id"], obs, plan.warm, key, plan.seed * 1000 + i))
    return streams


async def feed(
    streams: Sequence[FaultyStream],
    urls: Sequence[str],
    plan: SoakPlan,
    deadline: float,
    hold_last: asyncio.Event | None = None,
) -> None:
    """Run every stream to its end (or the deadline), all at once; their last batches wait for ``hold_last``."""
    clients = [httpx.AsyncClient(base_url=url, timeout=30) for url in urls]
    try:
        await asyncio.gather(*(s.run(clients, deadline, plan.rates, hold_last) for s in streams))
    finally:
        for client in clients:
            await client.aclose()


@dataclass
class SoakResult:
    """The streams, their checks against offline replays, and what the servers counted."""

    streams: list[FaultyStream]
    held: list[int]  # next_seq of each session as the service reports it at the end
    mismatches: list[str]
    applied_by_servers: float | None  # None when a server restarted (its counters restarted too)
    seconds: float
    retrain: dict[str, object] | None = None

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


def verify(url: str, streams: list[FaultyStream], registry: Registry, plan: SoakPlan) -> tuple[list[str], list[int]]:
    """Each session against its offline replay, its retained observations through a migration."""
    mismatches: list[str] = []
    held: list[int] = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for stream in streams:
            mode = http.get(f"/v1/sessions/{stream.session_id}", headers=stream.headers).json()["model"]
            others = [v.version for v in registry.versions(mode["mode"]) if v.version != mode["version"]]
            check = check_against_replay(http, stream, registry, plan.retained, others[-1] if others else None)
            mismatches += check.mismatches
            held.append(check.next_seq)
    return mismatches, held


def applied_by(urls: Sequence[str]) -> float:
    """Observations the servers applied to sessions by appending (their metrics, added up)."""
    total = 0.0
    for url in urls:
        for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
            if line.startswith("latentcast_observations_applied_total{") and 'kind="append"' in line:
                total += float(line.split()[-1])
    return total


def table(store: str, servers: int, result: SoakResult) -> str:
    t = result.totals
    rows = [
        ("store", f"{store}, {servers} server process{'es' if servers > 1 else ''}"),
        ("sessions", str(len(result.streams))),
        ("observations sent (retries, overlaps, drops included)", str(t.sent)),
        ("observations applied (acknowledged)", f"{t.applied} of {result.expected_applied}"),
        ("retried batches (same reply each time)", str(t.retries)),
        ("overlapping batches", str(t.overlaps)),
        ("dropped connections (applied all the same, then answered once)", f"{t.dropped} ({t.dropped_applied})"),
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


# processes --------------------------------------------------------------------


@contextlib.contextmanager
def services(env: dict[str, str], count: int, folder: Path) -> Iterator[list[str]]:
    """``count`` ``latentcast serve`` processes on free loopback ports; yields their URLs."""
    with contextlib.ExitStack() as stack:
        started = [stack.enter_context(ServiceProcess(env, folder / f"serve-{i}.log")) for i in range(count)]
        yield [server.url for server in started]


def prepare_registry(root: Path) -> Registry:
    """Two barely trained versions of each mode on the bundled prices; the first of each is champion."""
    registry = Registry(root)
    prices = sources.bundled(["IBM", "MSFT"])
    for seed in (0, 1):
        for mode in ("ar", "latent"):
            config = ModelConfig.from_dict({**MODEL.to_dict(), "mode": mode})
            train = TrainConfig.from_dict({**WEAK.to_dict(), "seed": seed})
            train_and_register(registry, prices, "bundled", config, train)
    return registry


def service_env(registry: Registry, store: str, redis_url: str | None, plan: SoakPlan, poll: float) -> dict[str, str]:
    env = {
        "LATENTCAST_ARTIFACTS": str(registry.root),
        "LATENTCAST_REGISTRY_POLL_SECONDS": str(poll),
        "LATENTCAST_LOG_LEVEL": "warning",
        "LATENTCAST_STORE": store,
        "LATENTCAST_API_KEYS": ",".join(KEYS),
        "LATENTCAST_ADMIN_KEY": ADMIN_KEY,
        "LATENTCAST_RETAINED_OBSERVATIONS": str(plan.retained),
    }
    if redis_url:
        env |= {"LATENTCAST_REDIS_URL": redis_url, "LATENTCAST_REDIS_PREFIX": f"soak-{random.getrandbits(32):08x}"}
    return env


# the soak -----------------------------------------------------------------------


async def soak(urls: Sequence[str], registry: Registry, plan: SoakPlan, retrain: bool) -> SoakResult:
    """Open the sessions, stream them (with a retrain meanwhile if asked), check them against replays."""
    started = time.monotonic()
    deadline = started + plan.seconds
    observations = bars(plan)
    first_wave = observations[: plan.sessions // 2] if retrain else observations
    async with httpx.AsyncClient(base_url=urls[0], timeout=30) as client:
        streams = await open_streams(client, plan, first_wave, 0)
        # with a retrain, the first sessions send their last batch only once the new champions serve
        promoted = asyncio.Event() if retrain else None
        tasks = [asyncio.create_task(feed(streams, urls, plan, deadline, promoted))]
        report: dict[str, object] | None = None
        if retrain:
            assert promoted is not None
            before = registry.champions()
            report = await asyncio.to_thread(run_retrain_command, registry.root)
            await wait_for_champions(client, report, deadline)
            promoted.set()
            report["seconds_into_soak"] = round(time.monotonic() - started, 1)
            report["streaming_meanwhile"] = sum(not s.done for s in streams)
            late = await open_streams(client, plan, observations[len(first_wave) :], len(first_wave))
            versions = [
                (await client.get(f"/v1/sessions/{s.session_id}", headers=s.headers)).json()["model"]["version"]
                for s in late
            ]
            report["sessions_on_new_champions"] = sum(v not in before.values() for v in versions)
            streams += late
            tasks.append(asyncio.create_task(feed(late, urls, plan, deadline)))
        await asyncio.gather(*tasks)
    mismatches, held = await asyncio.to_thread(verify, urls[0], streams, registry, plan)
    applied = await asyncio.to_thread(applied_by, urls)
    return SoakResult(streams, held, mismatches, applied, time.monotonic() - started, report)


def run_retrain_command(artifacts: Path) -> dict[str, object]:
    """``latentcast retrain`` against the registry the service polls, as a scheduled job would run it."""
    command = [sys.executable, "-m", "service.cli", "retrain", *RETRAIN_ARGS, "--artifacts", str(artifacts)]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"latentcast retrain failed ({done.returncode}):\n{done.stderr.decode()[-2000:]}")
    job: dict[str, object] = json.loads(done.stdout)
    return job


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
    parser.add_argument("--servers", type=int, default=1, help="service processes sharing the store (redis only)")
    parser.add_argument("--sessions", type=int, default=SoakPlan.sessions)
    parser.add_argument("--observations", type=int, default=SoakPlan.observations, help="per session")
    parser.add_argument("--seconds", type=float, default=SoakPlan.seconds, help="stop streaming after this long")
    parser.add_argument("--retrain", action="store_true", help="run a retrain that promotes new champions meanwhile")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.servers > 1 and args.store == "memory":
        parser.error("several servers need --store redis")
    plan = SoakPlan(sessions=args.sessions, observations=args.observations, seconds=args.seconds, seed=args.seed)
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        print("training the first versions ...", file=sys.stderr)
        registry = prepare_registry(Path(folder) / "artifacts")
        redis_url = args.redis_url
        if args.store == "redis" and not redis_url:
            redis_url = stack.enter_context(redis_server())
        env = service_env(registry, args.store, redis_url, plan, poll=1.0 if args.retrain else 0)
        urls = stack.enter_context(services(env, args.servers, Path(folder)))
        print(f"streaming {plan.sessions} sessions to {', '.join(urls)} ...", file=sys.stderr)
        result = asyncio.run(soak(urls, registry, plan, args.retrain))
    print(table(args.store, args.servers, result))
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
