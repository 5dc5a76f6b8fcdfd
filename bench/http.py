"""The service under load from wrk on loopback, beside a bare FastAPI endpoint, in one run.

    .venv/bin/python -m bench.http [--seconds 4] [--rounds 5] [--connections 1 64]

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

Every reply must be a 200 with the expected next seq; the bench fails otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import torch

from bench.http_latency import BENCH_MODEL, ROOT, service_env
from bench.processes import free_port, wait_ready
from data import sources
from models.config import ModelConfig

SCRIPT = ROOT / "bench" / "http.lua"
WARM_HISTORY = 50  # closes each session is opened with
WARMUP_SECONDS = 1
SERVERS = ("batched", "unbatched", "bare")


@dataclass(frozen=True)
class Run:
    """One wrk run's figures."""

    server: str
    connections: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failures: int  # non-2xx replies, socket errors and replies with an unexpected next seq
    mean_batch: float | None  # appends per micro-batch during the run (batched service only)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds


class Server:
    """A server under test: its process, its base URL, and the sessions wrk posts to."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.folder = folder
        with open(folder / f"{name}.log", "wb") as log:
            self.process = subprocess.Popen(
                [*command, "--port", str(self.port)],
                cwd=ROOT,
                env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def sessions_file(self, count: int, closes: list[float], tag: str) -> Path:
        """``count`` sessions opened for one run (fake ids for the bare endpoint), one per line."""
        if self.name == "bare":
            lines = [f"bare-{tag}-{i} {WARM_HISTORY}" for i in range(count)]
        else:
            with httpx.Client(base_url=self.url, timeout=30) as client:
                opened = [client.post("/v1/sessions", json={"history": closes[:WARM_HISTORY]}) for _ in range(count)]
            lines = [f"{r.raise_for_status().json()['session_id']} {WARM_HISTORY}" for r in opened]
        path = self.folder / f"sessions-{self.name}-{tag}.txt"
        path.write_text("\n".join(lines) + "\n")
        return path

    def batch_counts(self) -> tuple[float, float]:
        """(batches, appends in them) so far, from /metrics; zeros where there is no batching."""
        if self.name == "bare":
            return 0.0, 0.0
        values = {"count": 0.0, "sum": 0.0}
        for line in httpx.get(f"{self.url}/metrics", timeout=10).text.splitlines():
            for key in values:
                if line.startswith(f"latentcast_append_batch_size_{key} "):
                    values[key] = float(line.split()[-1])
        return values["count"], values["sum"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=4, help="wrk duration per server and run")
    parser.add_argument("--rounds", type=int, default=5, help="runs per server and number of connections")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--torch-threads", type=int, default=1, help="LATENTCAST_TORCH_THREADS of the service")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk", help="the wrk binary")
    args = parser.parse_args(argv)

    closes = sources.bundled(["IBM"])["close"].tolist()
    config = BENCH_MODEL
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "closes.txt").write_text("\n".join(f"{c:.2f}" for c in closes) + "\n")
        env = service_env(folder, args.torch_threads) | {"LATENTCAST_MAX_SESSIONS": "100000"}
        serve = [sys.executable, "-m", "service.cli", "serve"]
        bare = [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--log-level", "warning"]
        servers = [
            Server("batched", serve, env | {"LATENTCAST_BATCH_ENABLED": "true"}, folder),
            Server("unbatched", serve, env | {"LATENTCAST_BATCH_ENABLED": "false"}, folder),
            Server("bare", bare, env, folder),
        ]
        try:
            for server in servers:
                wait_ready(f"http://127.0.0.1:{server.port}", server.process)
            for server in servers:  # warm-up, not measured
                wrk(args.wrk, server, max(args.connections), WARMUP_SECONDS, closes, "warmup")
            for round_ in range(args.rounds):
                for connections in args.connections:
                    order = servers[round_ % len(servers) :] + servers[: round_ % len(servers)]
                    for server in order:
                        runs.append(wrk(args.wrk, server, connections, args.seconds, closes, f"{round_}-{connections}"))
        finally:
            for server in servers:
                server.stop()
    return report(runs, args, config)


def wrk(binary: str, server: Server, connections: int, seconds: int, closes: list[float], tag: str) -> Run:
    """One wrk run of ``connections`` connections, each posting to its own session."""
    threads = min(connections, os.cpu_count() or 1)
    sessions = server.sessions_file(2 * connections, closes, tag)
    before = server.batch_counts()
    command = [binary, "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s"]
    command += ["-s", str(SCRIPT), server.url, "--", str(sessions), str(server.folder / "closes.txt")]
    command += [str(threads), str(connections)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    after = server.batch_counts()
    batches = after[0] - before[0]
    return Run(
        server=server.name,
        connections=connections,
        requests=figures["requests"],
        seconds=figures["duration_us"] / 1e6,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        failures=figures["non2xx"] + figures["socket_errors"] + figures["mismatched"],
        mean_batch=(after[1] - before[1]) / batches if batches else None,
    )


def report(runs: list[Run], args: argparse.Namespace, config: ModelConfig) -> int:
    version = subprocess.run([args.wrk, "--version"], capture_output=True, text=True).stdout.split("[")[0].strip()
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
        for name in SERVERS:
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
    failures = sum(r.failures for r in runs)
    print(f"failed replies (non-2xx, socket errors, wrong next seq): {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
