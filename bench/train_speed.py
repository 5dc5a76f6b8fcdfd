"""Training throughput of both modes, measured side by side in one run.

Each repetition times a fixed number of optimiser steps of the latent model
(truncated BPTT over contiguous streams) and of the ar model (random windows),
interleaved so that both see the same machine load. Reported per mode: steps
per second, input rows read per second, and scored targets per second (latent
scores every step of a chunk, ar only the last step of each window).

With ``--universe`` it measures training at scale instead (``bench.train_universe``
says what): rows per second and peak memory against the number of tickers,
one process against two, and the ar model against Darts' ``BlockRNNModel``.

    python -m bench.train_speed [--steps 30] [--repeats 5]
    python -m bench.train_speed --universe [--tickers 4 100 500] [--parallel-tickers 100 500] [--repeats 3] \
        [--step-streams 25 50 100 250 500] [--cells GRU LSTM] [--darts-python /path/to/venv/bin/python] \
        [--scaling volatility]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from bench.train_universe import PARTS, one_count, universe
from data import sources
from data.features import DEFAULT_FEATURES
from models.config import CELLS, MODES, SCALINGS, ModelConfig
from models.forecaster import Forecaster
from training.batches import Batch, batches_for
from training.config import TrainConfig, cores_allowed
from training.dataset import TrainingData
from training.loop import loss_sum


def measure(mode: str, data: TrainingData, train: TrainConfig, steps: int) -> dict[str, float]:
    """Time ``steps`` optimiser steps of ``mode``; rows and targets per second."""
    torch.manual_seed(0)
    config = ModelConfig(mode=mode, n_features=len(data.features), scaling="global")
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
        out, state = model(batch.x, state, batch.y.shape[1])
        total, count = loss_sum(out, batch.y, levels)
        optimiser.zero_grad(set_to_none=True)
        (total / max(count, 1)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.clip_norm)
        optimiser.step()
        rows += batch.x.shape[0] * batch.x.shape[1]
        targets += int(torch.isfinite(batch.y[..., 0]).sum())
    seconds = time.perf_counter() - started
    return {"steps_per_s": steps / seconds, "rows_per_s": rows / seconds, "targets_per_s": targets / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="optimiser steps per mode and repetition")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--universe", action="store_true", help="training at scale instead (bench.train_universe)")
    parser.add_argument("--tickers", type=int, nargs="+", default=[4, 100, 500], help="ticker counts (--universe)")
    parser.add_argument(
        "--parallel-tickers", type=int, nargs="+", default=[100, 500], help="ticker counts of 1 vs 2 processes"
    )
    parser.add_argument(
        "--step-streams", type=int, nargs="+", default=[25, 50, 100, 250, 500], help="streams of a step (--universe)"
    )
    parser.add_argument("--step-count", type=int, default=5, help="latent steps timed per width and round")
    parser.add_argument("--ar-windows", type=int, default=8192, help="ar windows per epoch (--universe)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (--universe)")
    parser.add_argument(
        "--cells", nargs="+", choices=CELLS, default=["GRU"], help="cells of the steps, processes and darts parts"
    )
    parser.add_argument("--darts-python", type=Path, help="an interpreter with darts installed (--universe)")
    parser.add_argument("--darts-epochs", type=int, default=3, help="Darts epochs per run, the first not timed")
    parser.add_argument("--scaling", choices=SCALINGS, default="global", help="the model's scaling (--universe)")
    parser.add_argument(
        "--parts", nargs="+", choices=PARTS, default=list(PARTS), help="which comparisons to run (--universe)"
    )
    parser.add_argument("--universe-child", nargs=2, type=Path, metavar=("FOLDER", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.universe_child is not None:
        train = TrainConfig(epochs=1, threads=args.threads, windows_per_epoch=args.ar_windows, progress=False)
        folder, cache = args.universe_child
        print(json.dumps(one_count(folder, cache, train)))
        return
    if args.universe:
        universe(args)
        return
    train = TrainConfig(threads=cores_allowed(), progress=False)
    torch.set_num_threads(train.threads or cores_allowed())
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
