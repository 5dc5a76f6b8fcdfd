"""Rows scored and time per training epoch of both modes, for 4 tickers and for many, in one run.

The many tickers are copies of the bundled four (renamed, dates shifted by a
day per copy), so that each copy has as many rows as its original: the time
per epoch should grow with the rows, that is linearly with the tickers. For
each ticker count and mode it prints the training rows with a target, the
rows that carried a loss in one epoch (each counted once), and the median
seconds of a full epoch (training and validation) over the repetitions,
interleaved so that both counts see the same machine load.

    python -m bench.train_epoch [--tickers 4 100] [--modes ar latent] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics

import numpy as np
import pandas as pd
import torch

from data import sources
from data.features import DEFAULT_FEATURES
from models.config import MODES, ModelConfig
from models.forecaster import Forecaster
from training.batches import BatchSource, batches_for
from training.config import TrainConfig, cores_allowed
from training.dataset import TrainingData
from training.loop import train


def copied_prices(count: int) -> pd.DataFrame:
    """``count`` tickers made of the bundled four, each copy renamed and its dates shifted by its index."""
    bundled = sources.bundled()
    names = sorted(bundled["ticker"].unique())
    frames = []
    for k in range(count):
        name = names[k % len(names)]
        frame = bundled[bundled["ticker"] == name].copy()
        frame["ticker"] = name if count <= len(names) else f"{name}{k}"
        frame["date"] = frame["date"] + pd.Timedelta(days=0 if count <= len(names) else k)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def rows_with_a_target(data: TrainingData) -> int:
    """Training rows whose one-day target lies inside the training span."""
    return sum(max(data.split.bounds(s)[0] - 1, 0) for s in data.series)


def rows_scored(source: BatchSource) -> int:
    """Rows that carry a loss in one epoch, counted through the batches themselves."""
    rng = np.random.default_rng(0)
    return sum(int(torch.isfinite(batch.y).any(dim=-1).sum()) for batch in source.epoch(rng))


def epoch_seconds(mode: str, data: TrainingData, config: TrainConfig) -> float:
    torch.manual_seed(0)
    model_config = ModelConfig(mode=mode, n_features=len(data.features))
    result = train(Forecaster(model_config), batches_for(model_config, data, config), config)
    return result.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, nargs="+", default=[4, 100], help="ticker counts to compare")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="modes to time")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = TrainConfig(epochs=1, threads=cores_allowed(), progress=False)
    torch.set_num_threads(config.threads or cores_allowed())
    datasets = {
        n: TrainingData.prepare(copied_prices(n), DEFAULT_FEATURES, ModelConfig().horizon) for n in args.tickers
    }
    times: dict[tuple[int, str], list[float]] = {(n, m): [] for n in args.tickers for m in args.modes}
    for _ in range(args.repeats):
        for n, data in datasets.items():
            for mode in args.modes:
                times[(n, mode)].append(epoch_seconds(mode, data, config))
    print(
        f"cores {os.cpu_count()}, torch threads {config.threads}, default ModelConfig and TrainConfig; "
        f"one epoch (training + validation), median of {args.repeats} interleaved runs"
    )
    print(f"{'tickers':>8}{'mode':>8}{'rows':>10}{'scored':>10}{'share':>8}{'s/epoch':>10}{'us/row':>9}")
    per_row = {}
    for n, data in datasets.items():
        total = rows_with_a_target(data)
        for mode in args.modes:
            scored = rows_scored(batches_for(ModelConfig(mode=mode), data, config))
            seconds = statistics.median(times[(n, mode)])
            per_row[(n, mode)] = seconds / scored
            print(
                f"{n:>8}{mode:>8}{total:>10}{scored:>10}{scored / total:>8.1%}{seconds:>10.2f}"
                f"{seconds / scored * 1e6:>9.1f}"
            )
    low, high = min(args.tickers), max(args.tickers)
    for mode in args.modes:
        growth = statistics.median(times[(high, mode)]) / statistics.median(times[(low, mode)])
        print(
            f"{mode}: {high} tickers take {growth:.1f}x the epoch time of {low} "
            f"({high / low:.0f}x the tickers); time per scored row {per_row[(high, mode)] / per_row[(low, mode)]:.2f}x"
        )


if __name__ == "__main__":
    main()
