"""Training at scale, for ``python -m bench.train_speed --universe``; every comparison measured in one run.

- rows per second of one training epoch of each mode against the number of
  tickers, each count trained in a child process of its own from a folder of
  Parquet files (through ``data.universe`` and its feature cache), which also
  reports its peak resident memory;
- one latent epoch in one process and in two data-parallel processes
  (``torch.distributed``, gloo), interleaved, with the load average of the
  machine before and after;
- seconds per training epoch of the ar model at window 32 on one ticker, and
  of a Darts ``BlockRNNModel`` (GRU, 64 hidden, input chunk 32, batch 64) on
  the same scaled returns, run by ``bench/darts_gru.py`` in another
  interpreter (``--darts-python``) so that darts stays out of the project's
  environment. Both wall-clock and CPU seconds (the process's own, which
  other work on a shared machine inflates less), and the ratio of each
  repetition's pair, run one after the other.

The tickers are copies of the bundled four: copy k of a ticker has its daily
log returns multiplied by a factor between 0.5 and 1.5 (drawn per copy) and
its bars rebuilt from them, on the original dates, so that no two copies are
the same series and every copy has the rows of its original.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from data import sources
from data.feature_cache import FeatureCache, FeatureSpec
from data.features import DEFAULT_FEATURES
from data.universe import load_series
from models.config import MODES, ModelConfig
from training import distributed
from training.config import TrainConfig
from training.dataset import TrainingData, batches_for
from training.loop import evaluate_loss
from training.pipeline import fit

AR_WINDOW = 32
PARTS = ("tickers", "processes", "darts")  # the comparisons, in the order they run
SCALE_RANGE = (0.5, 1.5)  # the return multipliers of the copies
KIB = 1024


def write_universe(folder: Path, count: int) -> Path:
    """``count`` Parquet files, ``T0000.parquet`` ..., copies of the bundled tickers with rescaled returns."""
    folder.mkdir(parents=True, exist_ok=True)
    bundled = sources.bundled()
    names = sorted(bundled["ticker"].unique())
    rng = np.random.default_rng(0)
    for k in range(count):
        rows = bundled[bundled["ticker"] == names[k % len(names)]].drop(columns="ticker").reset_index(drop=True)
        scale = 1.0 if k < len(names) else rng.uniform(*SCALE_RANGE)
        returns = np.diff(np.log(rows["close"].to_numpy()), prepend=np.log(rows["close"].iloc[0]))
        returns[0] = 0.0
        close = rows["close"].iloc[0] * np.exp(np.cumsum(returns * scale))
        ratio = close / rows["close"].to_numpy()
        for column in ("open", "high", "low", "close", "adj_close"):
            rows[column] = rows[column].to_numpy() * ratio
        rows.to_parquet(folder / f"T{k:04d}.parquet", index=False)
    return folder


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB  # kilobytes on Linux


def one_count(folder: Path, cache: Path, train: TrainConfig) -> dict[str, float]:
    """In a child of its own: load the folder, one training epoch per mode, one latent validation pass."""
    started = time.perf_counter()
    spec = FeatureSpec(DEFAULT_FEATURES, ModelConfig().horizon)
    series = load_series("parquet", spec, FeatureCache(cache), path=str(folder))
    out = {"load_seconds": time.perf_counter() - started, "rows": float(sum(len(s) for s in series))}
    data = TrainingData.from_series(series, spec.names, spec.horizon)
    for mode in MODES:
        config = ModelConfig(mode=mode, n_features=len(spec.names))
        trained = fit(config, data, train, validate=False)
        out[f"{mode}_rows_per_s"] = trained.result.rows / trained.result.seconds
        if mode == "latent":  # the validation batches count towards the peak too
            evaluate_loss(trained.model, batches_for(config, data, train).validation())
    out["peak_rss_bytes"] = float(peak_rss_bytes())
    return out


def run_child(args: list[str]) -> dict[str, float]:
    """``python -m bench.train_speed`` with ``args`` in a child process; the JSON line it prints."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.train_speed", *args], check=True, capture_output=True, text=True
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def parallel_rank(folder: Path, cache: Path, train: TrainConfig, out: Path) -> None:
    """One of two data-parallel processes: a latent epoch on its shard; the main one writes the rate."""
    world = distributed.join("cpu")
    try:
        spec = FeatureSpec(DEFAULT_FEATURES, ModelConfig().horizon)
        data = TrainingData.from_series(
            load_series("parquet", spec, FeatureCache(cache), path=str(folder)), spec.names, spec.horizon
        )
        result = fit(ModelConfig(n_features=len(spec.names)), data, train, validate=False, world=world).result
        if world.main:
            out.write_text(str(result.rows / result.seconds))
    finally:
        distributed.leave()


def runs(seconds: list[float]) -> str:
    return ", ".join(f"{s:.2f}" for s in seconds)


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def ar_against_darts(args: argparse.Namespace, work: Path) -> None:
    """Seconds per training epoch of the ar model at window 32 on IBM, and of Darts' BlockRNNModel."""
    data = TrainingData.prepare(sources.bundled(["IBM"]), DEFAULT_FEATURES, ModelConfig().horizon)
    config = ModelConfig(mode="ar", n_features=len(data.features), window=AR_WINDOW)
    one, more = (TrainConfig(epochs=e, threads=args.threads, progress=False) for e in (1, args.darts_epochs))
    (series,) = data.series
    x, _ = data.scaled(series)
    returns = work / "ibm_returns.npy"
    np.save(returns, x[: data.split.bounds(series)[0], 0])
    ours, theirs, ours_cpu, theirs_cpu = [], [], [], []
    # -I: the script's folder off sys.path, where bench/http.py would shadow the standard library's http
    script = Path(__file__).with_name("darts_gru.py")
    command = [str(args.darts_python), "-I", str(script), "--returns", str(returns)]
    command += ["--window", str(AR_WINDOW), "--horizon", str(config.horizon), "--threads", str(args.threads)]
    command += ["--epochs", str(args.darts_epochs)]
    windows = 0
    fit(config, data, one, validate=False)  # untimed: the first fit of a process also initialises torch's kernels
    for _ in range(args.repeats):
        # the epochs after the first, as for Darts: a longer run less a one-epoch run, which share the setup
        cpu = []
        for train in (one, more):
            cpu_started = time.process_time()
            result = fit(config, data, train, validate=False).result
            cpu.append((result, time.process_time() - cpu_started))
        (first, first_cpu), (result, result_cpu) = cpu
        ours.append((result.seconds - first.seconds) / (args.darts_epochs - 1))
        ours_cpu.append((result_cpu - first_cpu) / (args.darts_epochs - 1))
        windows = result.train_rows
        if args.darts_python is not None:
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            got = json.loads(done.stdout.strip().splitlines()[-1])
            theirs.append(got["seconds_per_epoch"])
            theirs_cpu.append(got["cpu_seconds_per_epoch"])
    print(f"ar, window {AR_WINDOW}, IBM alone, {windows} windows, batch {one.batch_size}, {args.threads} threads,")
    print(f"seconds per training epoch after the first, of {args.darts_epochs} epochs, median of {args.repeats} runs:")
    for name, mine, darts in (("wall-clock", ours, theirs), ("CPU", ours_cpu, theirs_cpu)):
        print(f"  {name}")
        print(f"    latentcast ar epoch  {statistics.median(mine):8.2f} s ({runs(mine)})")
        if darts:
            pairs = [a / b for a, b in zip(mine, darts, strict=True)]
            print(f"    Darts BlockRNNModel  {statistics.median(darts):8.2f} s ({runs(darts)})")
            print(f"    latentcast / Darts   {statistics.median(pairs):8.2f}x the time (run by run: {runs(pairs)})")
    if not theirs:
        print("    Darts not run: pass --darts-python, an interpreter with darts installed")


def universe(args: argparse.Namespace) -> None:
    """Print the comparisons of the module docstring that ``args.parts`` names, in the order it lists them."""
    print(f"cores {os.cpu_count()}; load average before: {load_average()}")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        if "tickers" in args.parts:
            tickers_table(args, work)
        if "processes" in args.parts:
            processes(args, work)
        if "darts" in args.parts:
            ar_against_darts(args, work)
    print(f"load average after: {load_average()}")


def tickers_table(args: argparse.Namespace, work: Path) -> None:
    """Rows per second of each mode and peak memory against the number of tickers."""
    child = ["--threads", str(args.threads), "--ar-windows", str(args.ar_windows)]
    print("one training epoch per mode, each ticker count in a child process; load: files to series,")
    print("cold (features computed and cached) and warm (read from the cache, as a retrain reads them);")
    print("rows/s: the mean of the two children's epochs")
    header = f"{'tickers':>8}{'rows':>10}{'cold s':>8}{'warm s':>8}{'ar rows/s':>11}{'latent rows/s':>15}"
    print(f"{header}{'peak RSS MiB':>14}")
    for n in args.tickers:
        folder, cache = write_universe(work / f"u{n}", n), work / f"cache{n}"
        cold = run_child(["--universe-child", str(folder), str(cache), *child])
        got = run_child(["--universe-child", str(folder), str(cache), *child])
        print(
            f"{n:>8}{got['rows']:>10.0f}{cold['load_seconds']:>8.1f}{got['load_seconds']:>8.1f}"
            f"{(cold['ar_rows_per_s'] + got['ar_rows_per_s']) / 2:>11.0f}"
            f"{(cold['latent_rows_per_s'] + got['latent_rows_per_s']) / 2:>15.0f}"
            f"{max(cold['peak_rss_bytes'], got['peak_rss_bytes']) / KIB**2:>14.0f}"
        )


def processes(args: argparse.Namespace, work: Path) -> None:
    """One latent training epoch in one process (one thread, two threads) and in two processes."""
    n = args.parallel_tickers
    folder, cache = write_universe(work / f"p{n}", n), work / f"pcache{n}"
    one_thread = TrainConfig(epochs=1, threads=1, progress=False)
    two_threads = TrainConfig(epochs=1, threads=2, progress=False)
    spec = FeatureSpec(DEFAULT_FEATURES, ModelConfig().horizon)
    data = TrainingData.from_series(
        load_series("parquet", spec, FeatureCache(cache), path=str(folder)), spec.names, spec.horizon
    )
    runs: dict[str, list[float]] = {
        "1 process, 1 thread": [],
        "1 process, 2 threads": [],
        "2 processes, 1 thread": [],
    }
    for _ in range(args.repeats):
        for name, train in (("1 process, 1 thread", one_thread), ("1 process, 2 threads", two_threads)):
            result = fit(ModelConfig(n_features=len(spec.names)), data, train, validate=False).result
            runs[name].append(result.rows / result.seconds)
        out = work / "rate"
        distributed.spawn(2, parallel_rank, folder, cache, one_thread, out)
        runs["2 processes, 1 thread"].append(float(out.read_text()))
    print(f"latent, {n} tickers, one training epoch, median of {args.repeats} interleaved runs")
    medians = {name: statistics.median(r) for name, r in runs.items()}
    for name, rate in medians.items():
        print(f"{name:>24}{rate:>10.0f} rows/s")
    for base in ("1 process, 1 thread", "1 process, 2 threads"):
        print(f"2 processes / {base}: {medians['2 processes, 1 thread'] / medians[base]:.2f}x")
    print(f"load average after the process comparison: {load_average()}")
