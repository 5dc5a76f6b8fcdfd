"""Training throughput of both modes, measured side by side in one run.

Each repetition times a fixed number of optimiser steps of the latent model
(truncated BPTT over contiguous streams) and of the ar model (random windows),
interleaved so that both see the same machine load. Reported per mode: steps
per second, input rows read per second, and scored targets per second (latent
scores every step of a chunk, ar only the last step of each window).

With ``--universe`` it measures training at scale instead, each comparison
side by side in one run: rows scored per second of one epoch against the
number of tickers (copies of the bundled four, as ``bench.train_epoch``
makes them), the same epoch in one process and in two data-parallel
processes (``torch.distributed``, gloo), and the time of one ar epoch at
window 32 on one ticker.

    python -m bench.train_speed [--steps 30] [--repeats 5]
    python -m bench.train_speed --universe [--tickers 4 100 500] [--parallel-tickers 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.train_epoch import copied_prices
from data import sources
from data.features import DEFAULT_FEATURES
from models.config import MODES, ModelConfig
from models.forecaster import Forecaster
from training import distributed
from training.config import TrainConfig
from training.dataset import Batch, TrainingData, batches_for
from training.loop import loss_sum
from training.pipeline import fit

AR_WINDOW = 32


def measure(mode: str, data: TrainingData, train: TrainConfig, steps: int) -> dict[str, float]:
    """Time ``steps`` optimiser steps of ``mode``; rows and targets per second."""
    torch.manual_seed(0)
    config = ModelConfig(mode=mode, n_features=len(data.features))
    model = Forecaster(config).train()
    levels = torch.tensor(config.quantiles)
    optimiser = torch.optim.Adam(model.parameters(), lr=train.lr)
    source = batches_for(config, data, train)
    rng = np.random.default_rng(0)
    batches: list[Batch] = []
    while len(batches) < steps:
        batches += list(source.epoch(rng))
    batches = batches[:steps]
    rows = targets = 0
    state = None
    started = time.perf_counter()
    for batch in batches:
        state = None if batch.reset or state is None else state.detach()
        out, state = model(batch.x, state)
        total, count = loss_sum(out, batch.y, levels)
        optimiser.zero_grad(set_to_none=True)
        (total / max(count, 1)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.clip_norm)
        optimiser.step()
        rows += batch.x.shape[0] * batch.x.shape[1]
        targets += int(torch.isfinite(batch.y[..., 0]).sum())
    seconds = time.perf_counter() - started
    return {"steps_per_s": steps / seconds, "rows_per_s": rows / seconds, "targets_per_s": targets / seconds}


def epoch_rate(mode: str, data: TrainingData, train: TrainConfig, world: distributed.World | None = None) -> float:
    """Rows scored per second of one epoch (training and validation) of the default ``mode`` model."""
    result = fit(ModelConfig(mode=mode, n_features=len(data.features)), data, train, world=world).result
    return result.rows / result.seconds


def epoch_rate_rank(tickers: int, train: TrainConfig, out: Path) -> None:
    """One of the data-parallel processes: trains its shard; the main one writes the rate to ``out``."""
    world = distributed.join("cpu")
    try:
        data = TrainingData.prepare(copied_prices(tickers), DEFAULT_FEATURES, ModelConfig().horizon)
        rate = epoch_rate("latent", data, train, world)
        if world.main:
            out.write_text(str(rate))
    finally:
        distributed.leave()


def parallel_rate(tickers: int, train: TrainConfig) -> float:
    """``epoch_rate`` of latent training in two processes of one thread each."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "rate"
        distributed.spawn(2, epoch_rate_rank, tickers, train, out)
        return float(out.read_text())


def universe(args: argparse.Namespace) -> None:
    """Rows per second against tickers and processes; one ar epoch at window 32 on one ticker."""
    # ar reads a capped sample of windows, so that its epochs at 500 tickers end in minutes; rows/s is unchanged
    one_thread = TrainConfig(epochs=1, threads=1, windows_per_epoch=args.ar_windows, progress=False)
    two_threads = TrainConfig(epochs=1, threads=2, windows_per_epoch=args.ar_windows, progress=False)
    horizon = ModelConfig().horizon
    rates: dict[tuple[int, str], list[float]] = {(n, m): [] for n in args.tickers for m in MODES}
    for _ in range(args.repeats):
        for n in args.tickers:
            data = TrainingData.prepare(copied_prices(n), DEFAULT_FEATURES, horizon)
            for mode in MODES:
                rates[(n, mode)].append(epoch_rate(mode, data, two_threads))
    print(f"cores {os.cpu_count()}; one epoch of the default models, median of {args.repeats} interleaved runs")
    print(f"{'tickers':>8}{'mode':>8}{'rows/s':>10}{'per ticker vs fewest':>22}")
    fewest = min(args.tickers)
    for n in args.tickers:
        for mode in MODES:
            rate = statistics.median(rates[(n, mode)])
            print(f"{n:>8}{mode:>8}{rate:>10.0f}{rate / statistics.median(rates[(fewest, mode)]):>22.2f}")

    n = args.parallel_tickers
    data = TrainingData.prepare(copied_prices(n), DEFAULT_FEATURES, horizon)
    runs: dict[str, list[float]] = {"1 process, 1 thread": [], "1 process, 2 threads": [], "2 processes, 1 thread": []}
    for _ in range(args.repeats):
        runs["1 process, 1 thread"].append(epoch_rate("latent", data, one_thread))
        runs["1 process, 2 threads"].append(epoch_rate("latent", data, two_threads))
        runs["2 processes, 1 thread"].append(parallel_rate(n, one_thread))
    print(f"latent, {n} tickers, one epoch, median of {args.repeats} interleaved runs")
    medians = {name: statistics.median(r) for name, r in runs.items()}
    for name, rate in medians.items():
        print(f"{name:>24}{rate:>10.0f} rows/s")
    for base in ("1 process, 1 thread", "1 process, 2 threads"):
        print(f"2 processes / {base}: {medians['2 processes, 1 thread'] / medians[base]:.2f}x")

    one = TrainingData.prepare(sources.bundled(["IBM"]), DEFAULT_FEATURES, horizon)
    config = ModelConfig(mode="ar", n_features=len(one.features), window=AR_WINDOW)
    whole_epoch = TrainConfig(epochs=1, threads=2, progress=False)
    seconds = []
    for _ in range(args.repeats):
        seconds.append(fit(config, one, whole_epoch).result.seconds)
    print(f"ar, window {AR_WINDOW}, IBM alone: {statistics.median(seconds):.2f} s per epoch (training + validation)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="optimiser steps per mode and repetition")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--universe", action="store_true", help="rows/s against tickers and processes instead")
    parser.add_argument("--tickers", type=int, nargs="+", default=[4, 100, 500], help="ticker counts (--universe)")
    parser.add_argument("--parallel-tickers", type=int, default=100, help="tickers of the 1 vs 2 processes run")
    parser.add_argument("--ar-windows", type=int, default=8192, help="ar windows per epoch (--universe)")
    args = parser.parse_args()
    if args.universe:
        universe(args)
        return
    train = TrainConfig(progress=False)
    torch.set_num_threads(train.threads)
    data = TrainingData.prepare(sources.bundled(), DEFAULT_FEATURES, ModelConfig().horizon)
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for _ in range(args.repeats):
        for mode in MODES:
            runs[mode].append(measure(mode, data, train, args.steps))
    print(
        f"cores {os.cpu_count()}, torch threads {torch.get_num_threads()}, default ModelConfig, "
        f"latent batch {train.streams} streams x {train.bptt} steps, ar batch {train.batch_size} windows "
        f"x {ModelConfig().window} steps; median of {args.repeats} interleaved runs of {args.steps} steps"
    )
    medians = {mode: {k: statistics.median(r[k] for r in runs[mode]) for k in runs[mode][0]} for mode in MODES}
    print(f"{'mode':8}{'steps/s':>10}{'rows/s':>12}{'targets/s':>12}")
    for mode in MODES:
        m = medians[mode]
        print(f"{mode:8}{m['steps_per_s']:>10.1f}{m['rows_per_s']:>12.0f}{m['targets_per_s']:>12.0f}")
    for key in ("steps_per_s", "rows_per_s", "targets_per_s"):
        print(f"latent / ar {key.replace('_per_s', '')} per second: {medians['latent'][key] / medians['ar'][key]:.2f}x")


if __name__ == "__main__":
    main()
