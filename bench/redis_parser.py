"""The Redis store's appends with redis-py's parser in C (hiredis) against its pure-Python one, in one run.

    .venv/bin/python -m bench.redis_parser [--seconds 4] [--rounds 4] [--connections 64]

Serves the default-size latent GRU (``bench/harness.py``) with ``latentcast serve`` on the Redis
store twice, on one redis-server: as installed (redis-py finds hiredis and parses answers with it),
and with hiredis hidden (a folder first on the server's path whose ``hiredis`` fails to import, as
where the package is not installed). wrk posts one close per request on ``--connections``
connections (``bench/http.lua``); the two servers take turns, rounds repeat, and medians are
printed: requests per second, and the server's CPU time per request, which depends far less than
throughput on what else the machine runs meanwhile.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench.cpu import load_text
from bench.harness import bench_env
from bench.wrk import WARMUP_SECONDS, Run, Server, wrk
from data import sources
from tests.support.processes import ROOT, Command, ServiceProcess, serve_command
from tests.support.redis_processes import RedisProcess

SERVER = "server"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    args = parser.parse_args(argv)
    closes = sources.bundled(["IBM"])["close"].tolist()
    load_before = os.getloadavg()
    runs: dict[str, list[Run]] = {"hiredis": [], "pure Python": []}
    with tempfile.TemporaryDirectory() as name, RedisProcess(Path(name), append_only=False) as redis:
        folder = Path(name)
        hidden = folder / "without-hiredis"
        hidden.mkdir()
        (hidden / "hiredis.py").write_text('raise ImportError("hidden by bench/redis_parser.py")\n')
        env = bench_env(folder, torch_threads=1) | {"LATENTCAST_STORE": "redis", "LATENTCAST_REDIS_URL": redis.url}
        paths = {"hiredis": str(ROOT), "pure Python": f"{hidden}{os.pathsep}{ROOT}"}
        processes = {
            parser_name: ServiceProcess(env, folder / f"{n}.log", command=with_path(path))
            for n, (parser_name, path) in enumerate(paths.items())
        }
        servers = {parser_name: Server(parser_name, process, folder) for parser_name, process in processes.items()}
        try:
            for process in processes.values():
                process.start()
            for server in servers.values():  # warm-up, not measured
                wrk(args.wrk, server, args.connections, WARMUP_SECONDS, closes, "warmup")
            for round_ in range(args.rounds):
                for parser_name, server in servers.items():
                    watched = {SERVER: server.process.pid}
                    run = wrk(args.wrk, server, args.connections, args.seconds, closes, f"{round_}", watched)
                    if run.failures:
                        raise RuntimeError(f"{run.failures} failed replies from the {parser_name} server")
                    runs[parser_name].append(run)
        finally:
            for process in processes.values():
                process.stop()
    print(f"cores {os.cpu_count()}; Redis store, {args.connections} connections, one close per request")
    print(f"{args.rounds} rounds of {args.seconds} s each, in turn; medians over rounds")
    print(f"load average (1, 5, 15 min) before {load_text(load_before)}, after {load_text(os.getloadavg())}")
    figures = {}
    for parser_name, measured in runs.items():
        throughput = statistics.median(run.throughput for run in measured)
        cost = statistics.median(_server_us(run) for run in measured)
        figures[parser_name] = (throughput, cost)
        print(f"{parser_name:<12} {throughput:>8.0f} req/s   server CPU {cost:>5.0f} us/request")
    (fast, fast_cost), (slow, slow_cost) = figures["hiredis"], figures["pure Python"]
    print(f"hiredis / pure Python: {fast / slow:.2f}x req/s, {fast_cost / slow_cost:.2f}x server CPU per request")
    return 0


def with_path(path: str) -> Command:
    """``latentcast serve`` with ``path`` as its Python path (the harness sets it to the repository)."""
    return lambda port: ["env", f"PYTHONPATH={path}", *serve_command(port)]


def _server_us(run: Run) -> float:
    assert run.cpu is not None
    return 1e6 * run.cpu.processes[SERVER] / run.throughput


if __name__ == "__main__":
    sys.exit(main())
