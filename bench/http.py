"""The service under load from wrk on loopback, beside a bare FastAPI endpoint, in one run.

    .venv/bin/python -m bench.http [--seconds 4] [--rounds 5] [--connections 1 64] [--plain-append]

Serves, each with ``latentcast serve`` or plain uvicorn on a free loopback port:
the service with micro-batching on, the service with it off (memory store, a
default-size latent GRU, untrained, with a real scaler), and
``bench/bare_app.py`` (the same body and reply shapes, no model). For each
number of connections, wrk posts one close per request, each connection to a
session of its own with in-order seqs (``bench/http.lua``), for ``--seconds``
per server; servers take turns, rounds repeat, medians are printed with the
ratios against the goals:

- 1 connection: the service's median latency within 2x of the bare endpoint's;
- 64 connections: the service's throughput at least 50% of the bare endpoint's,
  and micro-batching at least 1.5x the service without it.

With ``--plain-append``, a fourth server takes its turns: the batched service
with its append route as a plain FastAPI route (``bench/plain_append_app.py``)
instead of a ``LeanRoute``, and the ratios of the two are printed.

Every reply must be a 200 with the expected next seq; the bench fails otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from bench.harness import BENCH_MODEL, bench_env, uvicorn_command
from bench.wrk import WARMUP_SECONDS, Run, Server, wrk, wrk_version
from data import sources
from models.config import ModelConfig
from tests.support.processes import ServiceProcess


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=4, help="wrk duration per server and run")
    parser.add_argument("--rounds", type=int, default=5, help="runs per server and number of connections")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--torch-threads", type=int, default=1, help="LATENTCAST_TORCH_THREADS of the service")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk", help="the wrk binary")
    parser.add_argument("--plain-append", action="store_true", help="also the append route as a plain FastAPI route")
    args = parser.parse_args(argv)

    closes = sources.bundled(["IBM"])["close"].tolist()
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        env = bench_env(folder, args.torch_threads) | {"LATENTCAST_MAX_SESSIONS": "100000"}
        processes = {
            "batched": ServiceProcess(env | {"LATENTCAST_BATCH_ENABLED": "true"}, folder / "batched.log"),
            "unbatched": ServiceProcess(env | {"LATENTCAST_BATCH_ENABLED": "false"}, folder / "unbatched.log"),
            "bare": ServiceProcess(env, folder / "bare.log", command=uvicorn_command("bench.bare_app:app")),
        }
        if args.plain_append:
            plain = uvicorn_command("bench.plain_append_app:create_app", factory=True)
            batched = env | {"LATENTCAST_BATCH_ENABLED": "true"}
            processes["plain"] = ServiceProcess(batched, folder / "plain.log", command=plain)
        servers = [Server(name, process, folder, bare=name == "bare") for name, process in processes.items()]
        try:
            for process in processes.values():
                process.start()
            for server in servers:  # warm-up, not measured
                wrk(args.wrk, server, max(args.connections), WARMUP_SECONDS, closes, "warmup")
            for round_ in range(args.rounds):
                for connections in args.connections:
                    order = servers[round_ % len(servers) :] + servers[: round_ % len(servers)]
                    for server in order:
                        runs.append(wrk(args.wrk, server, connections, args.seconds, closes, f"{round_}-{connections}"))
        finally:
            for process in processes.values():
                process.stop()
    return report(runs, args, BENCH_MODEL)


def report(runs: list[Run], args: argparse.Namespace, config: ModelConfig) -> int:
    version = wrk_version(args.wrk)
    print(
        f"cores {os.cpu_count()}, service torch threads {args.torch_threads}, torch {torch.__version__}, "
        f"{version}, memory store"
    )
    print(
        f"model: latent {config.cell}, conv {config.conv_channels}x{config.conv_kernel}, hidden {config.hidden_size}; "
        f"one close per request, each connection its own session; {args.rounds} rounds of {args.seconds} s per "
        "server, servers in turn; medians over rounds"
    )
    print(f"{'server':<11}{'conns':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'batch':>7}{'failed':>8}")
    medians: dict[tuple[str, int], dict[str, float]] = {}
    for connections in args.connections:
        for name in dict.fromkeys(r.server for r in runs):
            mine = [r for r in runs if r.server == name and r.connections == connections]
            batch = [r.mean_batch for r in mine if r.mean_batch is not None]
            row = {
                "throughput": statistics.median(r.throughput for r in mine),
                "p50": statistics.median(r.p50_ms for r in mine),
                "p99": statistics.median(r.p99_ms for r in mine),
            }
            medians[(name, connections)] = row
            shown = f"{statistics.median(batch):.1f}" if batch else "-"
            failed = sum(r.failures for r in mine)
            print(
                f"{name:<11}{connections:>6}{row['throughput']:>10.0f}{row['p50']:>9.2f}{row['p99']:>9.2f}"
                f"{shown:>7}{failed:>8}"
            )
    low, high = min(args.connections), max(args.connections)
    for name in ("batched", "unbatched"):
        ratio = medians[(name, low)]["p50"] / medians[("bare", low)]["p50"]
        print(f"{low} connection: {name} p50 / bare p50 {ratio:.2f}x (goal <= 2x)")
    for name in ("batched", "unbatched"):
        ratio = medians[(name, high)]["throughput"] / medians[("bare", high)]["throughput"]
        print(f"{high} connections: {name} throughput / bare {ratio:.2f} (goal >= 0.5)")
    gain = medians[("batched", high)]["throughput"] / medians[("unbatched", high)]["throughput"]
    print(f"{high} connections: batched / unbatched throughput {gain:.2f}x (goal >= 1.5x)")
    if args.plain_append:
        lean_p50, plain_p50 = medians[("batched", low)]["p50"], medians[("plain", low)]["p50"]
        lean_rps, plain_rps = medians[("batched", high)]["throughput"], medians[("plain", high)]["throughput"]
        print(f"{low} connection: plain append route p50 / LeanRoute p50 {plain_p50 / lean_p50:.2f}x")
        print(f"{high} connections: plain append route throughput / LeanRoute {plain_rps / lean_rps:.2f}")
    failures = sum(r.failures for r in runs)
    print(f"failed replies (non-2xx, socket errors, wrong next seq): {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
