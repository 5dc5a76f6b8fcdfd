"""A whole market streamed: bulk appends, the WebSocket feed and two workers, each beside its baseline, in one run.

    .venv/bin/python -m bench.market [--sessions 500] [--seconds 4] [--rounds 3] [--connections 64] [--only bulk]

Serves the default-size latent GRU (untrained, with a real scaler: ``bench/harness.py``) with
``latentcast serve`` on loopback ports, and measures, rounds taking turns, medians printed:

- bulk: one client posting ``--sessions`` sessions' next close per request (``POST /v1/observations``)
  against the same client posting one close per request (``POST /v1/sessions/{id}/observations``), both
  on one connection, through the package's client, in observations per second (goal >= 30x);
- WebSocket: one connection to ``/v1/stream`` with ``--in-flight`` messages of one close each in flight,
  against one REST connection sending one close per request (goal >= 3x);
- workers: ``latentcast serve --workers 2`` against ``--workers 1``, both on the Redis store, under wrk
  with ``--connections`` connections posting one close per request (``bench/http.lua``) (goal >= 1.6x on
  2 cores; wrk and the service share the cores, and so does anything else the machine runs).

Beside the workers ratio it prints where the CPU went during each contender's runs (``bench/cpu.py``):
the cores each worker, the supervisor, redis-server and wrk used, and the rest of the machine; the
CPU time each spent per request; the connections each worker held; the load average before and after;
and the ratio those costs per request would allow on two cores free of other load. A run starts only
once every worker of ``--workers 2`` serves: ``/readyz`` answers as soon as one does.

Beside the bulk and WebSocket figures, the CPU time per observation of the server process (user and
system, every thread, from /proc) and of the client (this process): less noisy than throughput on
shared cores, as they leave out the time spent waiting for the other side and for the cores.
``--only`` runs some of the comparisons.

Every reply must be a 200 with the expected next seq; the bench fails otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from latentcast_client import ApiError, AsyncClient, ClientSettings, Feed, Session

from bench.cpu import load_text, process_seconds
from bench.harness import BENCH_MODEL, bench_env
from bench.wrk import Run, Server, wrk
from data import sources
from tests.support.processes import START_SECONDS, ServiceProcess, serve_command
from tests.support.redis_processes import RedisProcess
from tests.support.workers import serving_workers

WARM_HISTORY = 50
SUPERVISOR = "supervisor"
REDIS = "redis-server"
COMPARISONS = ("bulk", "websocket", "workers")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=500, help="sessions per bulk request")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each measured run")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each contender")
    parser.add_argument("--in-flight", type=int, default=64, help="WebSocket messages sent before waiting")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections of the workers comparison")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk", help="the wrk binary")
    parser.add_argument("--only", action="append", choices=COMPARISONS, help="run this comparison (repeatable)")
    args = parser.parse_args(argv)
    args.only = set(args.only or COMPARISONS)
    closes = sources.bundled(["IBM"])["close"].tolist()
    figures: dict[str, list[float]] = {}
    runs: dict[int, list[Run]] = {1: [], 2: []}
    load_before = os.getloadavg()
    # This process imported torch and pandas (the harness), a heap that a client importing only
    # latentcast_client does not have; each full collection walks it, and parsing a 500-item reply makes
    # collections come often. Frozen, as the service freezes its own (LATENTCAST_GC_FREEZE).
    gc.collect()
    gc.freeze()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        env = bench_env(folder, torch_threads=1) | {"LATENTCAST_MAX_SESSIONS": "1000000"}
        if args.only & {"bulk", "websocket"}:
            with ServiceProcess(env, folder / "memory.log") as server:
                asyncio.run(streamed(server, closes, args, figures))
        if "workers" in args.only:
            with RedisProcess(folder, append_only=False) as redis:
                redis_env = env | {"LATENTCAST_STORE": "redis", "LATENTCAST_REDIS_URL": redis.url}
                processes = {
                    n: ServiceProcess(
                        redis_env, folder / f"workers-{n}.log", command=workers(n), start_seconds=n * START_SECONDS
                    )
                    for n in (1, 2)
                }
                servers = {n: Server(f"workers-{n}", process, folder) for n, process in processes.items()}
                try:
                    for process in processes.values():
                        process.start()
                    pids = {n: serving_workers(process, n) for n, process in processes.items()}
                    assert redis.process is not None
                    watched = {n: watch(processes[n], pids[n], redis.process.pid) for n in pids}
                    for one in servers.values():  # warm-up, not measured
                        wrk(args.wrk, one, args.connections, 1, closes, "warmup")
                    for round_ in range(args.rounds):
                        for n, one in servers.items():
                            run = wrk(
                                args.wrk,
                                one,
                                args.connections,
                                round(args.seconds),
                                closes,
                                f"{round_}",
                                watched[n],
                                pids[n],
                            )
                            if run.failures:
                                raise RuntimeError(f"{run.failures} failed replies from {one.name}")
                            figures.setdefault(f"{n} worker(s), redis, {args.connections} conns, req/s", []).append(
                                run.throughput
                            )
                            runs[n].append(run)
                finally:
                    for process in processes.values():
                        process.stop()
    report(figures, args)
    if "workers" in args.only:
        report_cpu(runs, load_before, os.getloadavg())
    return 0


def workers(count: int) -> Callable[[int], list[str]]:
    return lambda port: [*serve_command(port), "--workers", str(count)]


def watch(process: ServiceProcess, pids: list[int], redis: int) -> dict[str, int]:
    """The processes whose CPU a run meters: each worker, the supervisor of several, redis-server."""
    named = {f"worker {k + 1}": pid for k, pid in enumerate(pids)}
    if pids != [process.pid]:
        named[SUPERVISOR] = process.pid
    return named | {REDIS: redis}


async def streamed(
    server: ServiceProcess, closes: list[float], args: argparse.Namespace, figures: dict[str, list[float]]
) -> None:
    """The bulk and WebSocket comparisons, rounds taking turns: observations per second and the CPU
    microseconds per observation of the server and of this client into ``figures``."""
    async with AsyncClient(ClientSettings(server.url, timeout_seconds=60)) as http, http.feed() as stream:
        # a session of its own for each contender: the feed numbers the batches it sends itself
        single, fed, *many = [await http.open(closes[:WARM_HISTORY]) for _ in range(args.sessions + 2)]
        contenders: dict[str, Callable[[], Awaitable[int]]] = {
            "REST, one append per request": lambda: one_per_request(http, single, closes),
        }
        if "bulk" in args.only:
            contenders[f"REST, bulk of {args.sessions} per request"] = lambda: bulk(http, many, closes)
        if "websocket" in args.only:
            contenders[f"WebSocket, {args.in_flight} messages in flight"] = lambda: feed(
                stream, fed, closes, args.in_flight
            )
        for round_ in range(args.rounds + 1):  # the first round warms up
            for name, contender in contenders.items():
                cpu, client_cpu = process_seconds(server.pid), time.process_time()
                started = time.perf_counter()
                deadline = started + args.seconds
                count = 0
                while time.perf_counter() < deadline:
                    count += await contender()
                if round_:
                    figures.setdefault(f"{name}, obs/s", []).append(count / (time.perf_counter() - started))
                    used = process_seconds(server.pid) - cpu
                    figures.setdefault(f"{name}, server CPU us/obs", []).append(1e6 * used / count)
                    used = time.process_time() - client_cpu
                    figures.setdefault(f"{name}, client CPU us/obs", []).append(1e6 * used / count)


async def one_per_request(http: AsyncClient, session: Session, closes: list[float]) -> int:
    reply = await http.append(session, [closes[session.next_seq % len(closes)]])
    assert reply["next_seq"] == session.next_seq
    return 1


async def bulk(http: AsyncClient, sessions: list[Session], closes: list[float]) -> int:
    replies = await http.append_many([(s, [closes[s.next_seq % len(closes)]]) for s in sessions])
    if any(isinstance(r, ApiError) for r in replies):
        raise RuntimeError(f"a bulk item failed: {next(r for r in replies if isinstance(r, ApiError))}")
    return len(replies)


async def feed(stream: Feed, session: Session, closes: list[float], in_flight: int) -> int:
    """``in_flight`` messages of one close each, sent before the first reply is awaited."""
    first = session.next_seq
    sends = [stream.send([(session, [closes[(first + k) % len(closes)]])]) for k in range(in_flight)]
    for results in await asyncio.gather(*sends):
        if isinstance(results[0], ApiError):
            raise RuntimeError(f"a feed message failed: {results[0]}")
    assert session.next_seq == first + in_flight
    return in_flight


def report(figures: dict[str, list[float]], args: argparse.Namespace) -> None:
    config = BENCH_MODEL
    print(f"cores {os.cpu_count()}; model: latent {config.cell}, hidden {config.hidden_size}; torch threads 1")
    print(f"{args.rounds} rounds of {args.seconds} s per contender, in turn; medians over rounds")
    medians = {name: statistics.median(values) for name, values in figures.items()}
    for name, value in medians.items():
        print(f"{name:<60}{value:>12.0f}")
    single = medians.get("REST, one append per request, obs/s", 0.0)  # absent when only workers ran
    if "bulk" in args.only:
        ratio = medians[f"REST, bulk of {args.sessions} per request, obs/s"] / single
        print(f"bulk {args.sessions}/request / one append per request: {ratio:.1f}x (goal >= 30x)")
    if "websocket" in args.only:
        ratio = medians[f"WebSocket, {args.in_flight} messages in flight, obs/s"] / single
        print(f"WebSocket one connection / REST one connection: {ratio:.1f}x (goal >= 3x)")
    if "workers" in args.only:
        one, two = (medians[f"{n} worker(s), redis, {args.connections} conns, req/s"] for n in (1, 2))
        print(f"2 workers / 1 worker, redis, {args.connections} connections: {two / one:.2f}x (goal >= 1.6x)")


def report_cpu(runs: dict[int, list[Run]], load_before: tuple[float, ...], load_after: tuple[float, ...]) -> None:
    """Where each contender's CPU went, medians over its runs, and the ratio those costs allow on two cores."""
    cores = os.cpu_count() or 1
    print(f"load average (1, 5, 15 min) before {load_text(load_before)}, after {load_text(load_after)}")
    print("cores used during the runs (CPU seconds per second), and CPU microseconds per request of the run:")
    per_request: dict[int, dict[str, float]] = {}
    for n, measured in runs.items():
        shares = [run.cpu for run in measured if run.cpu is not None]
        names = list(shares[0].processes) if shares else []
        used = {name: statistics.median(s.processes[name] for s in shares) for name in names}
        others = statistics.median(s.others for s in shares) if shares else 0.0
        throughput = statistics.median(run.throughput for run in measured)
        cost = {
            name: statistics.median(
                1e6 * s.processes[name] / run.throughput for s, run in zip(shares, measured, strict=True)
            )
            for name in names
        }
        per_request[n] = {
            "workers": sum(cost[name] for name in names if name.startswith("worker")),
            "rest": sum(cost[name] for name in names if not name.startswith("worker")),
        }
        held = [run.held for run in measured if run.held]
        print(f"  {n} worker(s), {throughput:.0f} req/s:")
        print(
            "    cores: "
            + ", ".join(f"{name} {value:.2f}" for name, value in used.items())
            + f", rest of the machine {others:.2f}"
        )
        print("    us/request: " + ", ".join(f"{name} {value:.0f}" for name, value in cost.items()))
        if held:
            print(
                "    connections per worker, halfway through each run: "
                + "; ".join("/".join(str(count) for count in one.values()) for one in held)
            )
    # a worker works in one thread (docs/performance.md), so one worker is bound by one core; two by two, and
    # the workers, the supervisor, redis-server and wrk all share the machine's cores
    one, two = per_request[1], per_request[2]
    bound_one = min(1e6 / one["workers"], cores * 1e6 / (one["workers"] + one["rest"]))
    bound_two = min(2e6 / two["workers"], cores * 1e6 / (two["workers"] + two["rest"]))
    print(
        f"at these CPU costs per request, {cores} cores free of other load allow 2 workers / 1 worker: "
        f"{bound_two / bound_one:.2f}x ({bound_two:.0f} / {bound_one:.0f} req/s)"
    )


if __name__ == "__main__":
    sys.exit(main())
