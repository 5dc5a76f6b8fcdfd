"""The Darts half of ``bench.train_speed --universe``: seconds per training epoch of a ``BlockRNNModel``.

Run by the benchmark in another interpreter, one with darts installed (kept
out of the project's own environment), so this file imports nothing of the
project: it reads the scaled returns the benchmark saved with ``numpy.save``
and prints one JSON line.

    DARTS_PYTHON -I bench/darts_gru.py --returns returns.npy --window 32 --horizon 5 --epochs 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import numpy as np
import torch
from darts import TimeSeries
from darts.models import BlockRNNModel
from darts.utils.likelihood_models import QuantileRegression
from pytorch_lightning.callbacks import Callback

HIDDEN = 64
BATCH = 64
QUANTILES = (0.1, 0.5, 0.9)


class EpochTimer(Callback):
    """Wall-clock seconds of each training epoch, and the CPU seconds this process spent in it."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self.started = self.cpu_started = 0.0

    def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
        self.started, self.cpu_started = time.perf_counter(), time.process_time()

    def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
        self.seconds.append(time.perf_counter() - self.started)
        self.cpu_seconds.append(time.process_time() - self.cpu_started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--returns", required=True, help="a .npy file of the training span's scaled returns")
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    returns = np.load(args.returns).astype(np.float32)
    series = TimeSeries.from_values(returns)
    timer = EpochTimer()
    model = BlockRNNModel(
        model="GRU",
        input_chunk_length=args.window,
        output_chunk_length=args.horizon,
        hidden_dim=HIDDEN,
        n_rnn_layers=1,
        batch_size=BATCH,
        n_epochs=args.epochs,
        likelihood=QuantileRegression(list(QUANTILES)),
        random_state=0,
        pl_trainer_kwargs={
            "accelerator": "cpu",
            "callbacks": [timer],
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "logger": False,
            "enable_checkpointing": False,
        },
    )
    model.fit(series, verbose=False)
    windows = len(returns) - args.window - args.horizon + 1
    # the first epoch also builds the data loaders and warms the allocator: the median of the rest
    steady = timer.seconds[1:] or timer.seconds
    cpu = timer.cpu_seconds[1:] or timer.cpu_seconds
    out = {"seconds_per_epoch": statistics.median(steady), "cpu_seconds_per_epoch": statistics.median(cpu)}
    print(json.dumps({**out, "epochs": timer.seconds, "windows": windows}))


if __name__ == "__main__":
    main()
