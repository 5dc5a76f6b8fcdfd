"""Where a session request's time goes: py-spy samples the service while wrk posts to it.

    .venv/bin/python -m bench.profile [--connections 1] [--seconds 8] [--batching] [--top 25]

Serves the service as ``bench/http.py`` does (a default-size latent GRU, memory
store), drives it with wrk and ``bench/http.lua``, samples every thread of the
server with py-spy, and prints the functions with the most samples: by their
own time (self) and with their callees (total), as a share of all samples.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.harness import ServiceProcess, bench_env
from bench.wrk import WARMUP_SECONDS, Server, wrk
from data import sources

SAMPLE_RATE = 400  # per second: enough for a few seconds' profile, light enough not to skew it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--batching", action="store_true", help="with micro-batching on")
    parser.add_argument("--top", type=int, default=25, help="functions to show")
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
            wrk(args.wrk, server, args.connections, WARMUP_SECONDS, closes, "warmup")
            stacks = folder / "stacks.txt"
            command = [args.py_spy, "record", "--pid", str(process.pid), "--rate", str(SAMPLE_RATE)]
            command += ["--duration", str(args.seconds), "--format", "raw", "--output", str(stacks), "--nonblocking"]
            spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            run = wrk(args.wrk, server, args.connections, args.seconds, closes, "profile")
            spy.wait(timeout=args.seconds + 30)
        finally:
            process.stop()
        print(
            f"cores {os.cpu_count()}; {args.connections} connection(s), {run.throughput:.0f} req/s, "
            f"p50 {run.p50_ms:.2f} ms, batching {'on' if args.batching else 'off'}; py-spy {SAMPLE_RATE} Hz"
        )
        print_top(stacks.read_text(), args.top)
    return 0


def print_top(collapsed: str, top: int) -> None:
    """The functions with most samples in py-spy's collapsed stacks (``frame;frame;... count``)."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
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
