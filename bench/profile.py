"""Where a session request's time goes: py-spy samples the service while wrk posts to it.

    .venv/bin/python -m bench.profile [--connections 1] [--seconds 8] [--batching] [--top 25] [--bulk 500]

Serves the service as ``bench/http.py`` does (a default-size latent GRU, memory
store), drives it with wrk and ``bench/http.lua`` (or, with ``--bulk N``, with bulk
appends of N sessions' next close each, through the package's client, as
``bench/market.py`` does), samples every thread of the server with py-spy, and
prints the functions with the most samples: by their own time (self) and with
their callees (total), as a share of all samples.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from latentcast_client import AsyncClient, ClientSettings

from bench.cpu import process_seconds
from bench.harness import bench_env
from bench.market import WARM_HISTORY, bulk
from bench.wrk import WARMUP_SECONDS, Server, wrk
from data import sources
from tests.support.processes import ServiceProcess

SAMPLE_RATE = 400  # per second: enough for a few seconds' profile, light enough not to skew it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--batching", action="store_true", help="with micro-batching on")
    parser.add_argument("--top", type=int, default=25, help="functions to show")
    parser.add_argument("--bulk", type=int, default=0, help="drive it with bulk appends of this many sessions")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"))
    args = parser.parse_args(argv)

    closes = sources.bundled(["IBM"])["close"].tolist()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        env = bench_env(folder, torch_threads=1) | {"LATENTCAST_BATCH_ENABLED": str(args.batching).lower()}
        name = "batched" if args.batching else "unbatched"
        process = ServiceProcess(env, folder / f"{name}.log")
        server = Server(name, process, folder)
        try:
            process.start()
            stacks = folder / "stacks.txt"
            command = [args.py_spy, "record", "--pid", str(process.pid), "--rate", str(SAMPLE_RATE)]
            command += ["--duration", str(args.seconds), "--format", "raw", "--output", str(stacks), "--nonblocking"]
            if args.bulk:
                count, used = asyncio.run(bulk_load(process, closes, args.bulk, args.seconds, command))
                load = (
                    f"bulk of {args.bulk}, {count / args.seconds:.0f} obs/s, server CPU {1e6 * used / count:.0f} us/obs"
                )
            else:
                wrk(args.wrk, server, args.connections, WARMUP_SECONDS, closes, "warmup")
                spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                run = wrk(args.wrk, server, args.connections, args.seconds, closes, "profile")
                spy.wait(timeout=args.seconds + 30)
                load = f"{args.connections} connection(s), {run.throughput:.0f} req/s, p50 {run.p50_ms:.2f} ms"
        finally:
            process.stop()
        print(f"cores {os.cpu_count()}; {load}, batching {'on' if args.batching else 'off'}; py-spy {SAMPLE_RATE} Hz")
        print_top(stacks.read_text(), args.top)
    return 0


async def bulk_load(
    process: ServiceProcess, closes: list[float], sessions: int, seconds: float, spy: list[str]
) -> tuple[int, float]:
    """Bulk appends for ``seconds`` while py-spy (``spy``) samples the server: the observations
    appended, and the CPU seconds the server used meanwhile."""
    async with AsyncClient(ClientSettings(process.url, timeout_seconds=60)) as http:
        opened = [await http.open(closes[:WARM_HISTORY]) for _ in range(sessions)]
        deadline = time.perf_counter() + WARMUP_SECONDS
        while time.perf_counter() < deadline:
            await bulk(http, opened, closes)
        sampler = subprocess.Popen(spy, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline, count, cpu = time.perf_counter() + seconds, 0, process_seconds(process.pid)
        while time.perf_counter() < deadline:
            count += await bulk(http, opened, closes)
        used = process_seconds(process.pid) - cpu
        await asyncio.to_thread(sampler.wait, seconds + 30)
    return count, used


def print_top(collapsed: str, top: int) -> None:
    """The functions with most samples in py-spy's collapsed stacks (``frame;frame;... count``)."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():  # the rest of a frame name holding a newline (py-spy read it mid-change)
            continue
        frames = [_short(frame) for frame in stack.split(";")]
        n = int(count)
        samples += n
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    print(f"{samples} samples (every thread, idle ones included)")
    for title, counter in (("self", own), ("total", total)):
        print(f"{title:>6} %  function")
        for frame, n in counter.most_common(top):
            print(f"{100 * n / samples:>8.1f}  {frame}")


def _short(frame: str) -> str:
    """``function (path/to/module.py:line)`` without the line number or the site-packages prefix."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    path = path.split("site-packages/")[-1].split("wt-perf/")[-1]
    return f"{name} ({path})"


if __name__ == "__main__":
    sys.exit(main())
