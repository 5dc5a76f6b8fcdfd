"""The data-parallel exchange on gloo: all-reduce against one all-gather and a sum, side by side in one run.

Two processes on this machine (``torch.distributed``, gloo, 1 thread each)
exchange a gradient bucket both ways, interleaved so that both see the same
machine: ``dist.all_reduce`` (DDP's default) and ``dist.all_gather_single``
followed by the sum of the gathered copies (``training.distributed.gathered_mean``,
what training uses where every process's copy together is at most ``GATHERED``
floats: 262,144). Printed are rank
0's median wall-clock and CPU microseconds per exchange over the repetitions,
and their ratio. 20,000 floats is the default model's gradient.

    python -m bench.exchange [--floats 20000 200000 1000000] [--repeats 5] [--exchanges 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.distributed as dist

from training import distributed

US = 1e6
PROCESSES = 2


def timed(run: Callable[[], object], exchanges: int) -> tuple[float, float]:
    """Wall-clock and CPU microseconds per call of ``run``, both processes starting together."""
    dist.barrier()
    cpu, clock = time.process_time(), time.perf_counter()
    for _ in range(exchanges):
        run()
    return (time.perf_counter() - clock) / exchanges * US, (time.process_time() - cpu) / exchanges * US


def rank(sizes: list[int], repeats: int, exchanges: int) -> None:
    world = distributed.join("cpu")
    torch.set_num_threads(1)
    try:
        for floats in sizes:
            flat = torch.randn(floats)
            everyone = torch.empty(world.size * floats)

            def all_reduce(flat: torch.Tensor = flat) -> None:
                dist.all_reduce(flat)

            def gather_sum(flat: torch.Tensor = flat, everyone: torch.Tensor = everyone) -> None:
                dist.all_gather_single(everyone, flat)
                everyone.view(world.size, -1).sum(0)

            runs = {"all-reduce": all_reduce, "all-gather and sum": gather_sum}
            times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
            for run in runs.values():  # untimed: the first exchanges set up gloo's buffers
                timed(run, 10)
            for _ in range(repeats):
                for name, run in runs.items():
                    times[name].append(timed(run, exchanges))
            if world.main:
                medians = {n: [statistics.median(t[i] for t in ts) for i in (0, 1)] for n, ts in times.items()}
                (reduce_wall, reduce_cpu), (gather_wall, gather_cpu) = medians.values()
                print(
                    f"{floats:>10}{reduce_wall:>12.0f}{reduce_cpu:>11.0f}{gather_wall:>12.0f}{gather_cpu:>11.0f}"
                    f"{reduce_wall / gather_wall:>11.2f}x",
                    flush=True,
                )
    finally:
        distributed.leave()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--floats", type=int, nargs="+", default=[20_000, 200_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--exchanges", type=int, default=200, help="exchanges per timing")
    args = parser.parse_args()
    print(f"cores {os.cpu_count()}; {PROCESSES} processes, gloo, 1 thread each; load average {os.getloadavg()[0]:.1f}")
    print(f"median of {args.repeats} interleaved timings of {args.exchanges} exchanges, rank 0, microseconds each")
    print(f"{'floats':>10}{'all-reduce':>12}{'cpu':>11}{'gather+sum':>12}{'cpu':>11}{'reduce/gather':>14}")
    distributed.spawn(PROCESSES, rank, args.floats, args.repeats, args.exchanges)


if __name__ == "__main__":
    main()
