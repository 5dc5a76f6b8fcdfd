"""The ar epoch against Darts' ``BlockRNNModel``, for ``python -m bench.train_speed --universe --parts darts``.

Seconds per training epoch of the ar model at window 32 on one ticker, and of
a Darts ``BlockRNNModel`` (GRU, 64 hidden, input chunk 32, batch 64) on the
same scaled returns, run by ``bench/darts_gru.py`` in another interpreter
(``--darts-python``) so that darts stays out of the project's environment.
Both wall-clock and CPU seconds, and the ratio of each repetition's pair, run
one after the other. The ar model scales returns as ``--scaling`` says: global
by default (Darts reads the same globally scaled returns); ``volatility`` is
what ``latentcast train`` trains by default, each step also running the
EWMA recursion over its window.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

from data import sources
from data.features import DEFAULT_FEATURES
from models.config import ModelConfig
from training.config import TrainConfig
from training.dataset import TrainingData
from training.pipeline import fit

AR_WINDOW = 32


def runs(seconds: list[float]) -> str:
    return ", ".join(f"{s:.2f}" for s in seconds)


def ar_against_darts(args: argparse.Namespace, work: Path) -> None:
    """Seconds per training epoch of the ar model at window 32 on IBM, of each cell, and of Darts' BlockRNNModel."""
    data = TrainingData.prepare(sources.bundled(["IBM"]), DEFAULT_FEATURES, ModelConfig().horizon)
    configs = {
        c: ModelConfig(mode="ar", cell=c, n_features=len(data.features), window=AR_WINDOW, scaling=args.scaling)
        for c in args.cells
    }
    one, more = (TrainConfig(epochs=e, threads=args.threads, progress=False) for e in (1, args.darts_epochs))
    (series,) = data.series
    x, _ = data.scaled(series)
    returns = work / "ibm_returns.npy"
    np.save(returns, x[: data.split.bounds(series)[0], 0])
    ours: dict[str, list[float]] = {c: [] for c in args.cells}
    ours_cpu: dict[str, list[float]] = {c: [] for c in args.cells}
    theirs, theirs_cpu = [], []
    # -I: the script's folder off sys.path, where bench/http.py would shadow the standard library's http
    script = Path(__file__).with_name("darts_gru.py")
    command = [str(args.darts_python), "-I", str(script), "--returns", str(returns)]
    command += ["--window", str(AR_WINDOW), "--horizon", str(ModelConfig().horizon), "--threads", str(args.threads)]
    command += ["--epochs", str(args.darts_epochs)]
    windows = 0
    for config in configs.values():  # untimed: the first fit of a process also initialises torch's kernels
        fit(config, data, one, validate=False)
    for _ in range(args.repeats):
        for cell, config in configs.items():
            # the epochs after the first, as for Darts: a longer run less a one-epoch run, which share the setup
            cpu = []
            for train in (one, more):
                cpu_started = time.process_time()
                result = fit(config, data, train, validate=False).result
                cpu.append((result, time.process_time() - cpu_started))
            (first, first_cpu), (result, result_cpu) = cpu
            ours[cell].append((result.seconds - first.seconds) / (args.darts_epochs - 1))
            ours_cpu[cell].append((result_cpu - first_cpu) / (args.darts_epochs - 1))
            windows = result.train_rows
        if args.darts_python is not None:
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            got = json.loads(done.stdout.strip().splitlines()[-1])
            theirs.append(got["seconds_per_epoch"])
            theirs_cpu.append(got["cpu_seconds_per_epoch"])
    print(
        f"ar, window {AR_WINDOW}, {args.scaling} scaling, IBM alone, {windows} windows, batch {one.batch_size}, "
        f"{args.threads} threads,"
    )
    print(f"seconds per training epoch after the first, of {args.darts_epochs} epochs, median of {args.repeats} runs:")
    for name, mine, darts in (("wall-clock", ours, theirs), ("CPU", ours_cpu, theirs_cpu)):
        print(f"  {name}")
        if darts:
            print(f"    Darts BlockRNNModel GRU   {statistics.median(darts):8.2f} s ({runs(darts)})")
        for cell, seconds in mine.items():
            print(f"    latentcast ar {cell:<11} {statistics.median(seconds):8.2f} s ({runs(seconds)})")
            if darts:
                pairs = [a / b for a, b in zip(seconds, darts, strict=True)]
                ratio = statistics.median(pairs)
                print(f"      / Darts                 {ratio:8.2f}x the time (run by run: {runs(pairs)})")
    if not theirs:
        print("    Darts not run: pass --darts-python, an interpreter with darts installed")
