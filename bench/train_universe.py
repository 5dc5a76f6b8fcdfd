"""Training at scale, for ``python -m bench.train_speed --universe``; every comparison measured in one run.

- rows per second of one training epoch of each mode against the number of
  tickers, each count trained in a child process of its own from a folder of
  Parquet files (through ``data.universe`` and its feature cache), which also
  reports its peak resident memory;
- the CPU time of one latent optimiser step against the streams it reads,
  in one process: the part of a step that does not shrink with its batch
  bounds what data parallelism can gain;
- one latent epoch in one process and in two data-parallel processes
  (``torch.distributed``, gloo), at each ticker count, in rounds, each with
  the load average before it and every process's CPU seconds;
- seconds per training epoch of the ar model at window 32 on one ticker, and
  of a Darts ``BlockRNNModel`` (GRU, 64 hidden, input chunk 32, batch 64) on
  the same scaled returns (``bench/ar_darts.py``). Both wall-clock and CPU
  seconds (the process's own, which other work on a shared machine inflates
  less), and the ratio of each repetition's pair, run one after the other.

The model scales returns as ``--scaling`` says (global by default;
``volatility`` is what ``latentcast train`` trains, each step also running the
EWMA recursion over its steps). The steps, processes and darts parts run once
for each cell of ``--cells`` (GRU alone by default, the cell of the default
model and of the Darts model):
torch runs an LSTM on the CPU through oneDNN's fused kernels, a GRU or an RNN
as one small op after another, so the cell changes what a step costs.

The tickers are copies of the bundled four: copy k of a ticker has its daily
log returns multiplied by a factor between 0.5 and 1.5 (drawn per copy) and
its bars rebuilt from them, on the original dates, so that no two copies are
the same series and every copy has the rows of its original.
"""

from __future__ import annotations

import argparse
import itertools
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
import torch

from bench import ar_darts
from data import sources
from data.feature_cache import FeatureCache, FeatureSpec
from data.features import DEFAULT_FEATURES
from data.universe import load_series
from models.config import MODES, ModelConfig
from models.forecaster import Forecaster
from training import distributed, loop
from training.batches import batches_for
from training.config import TrainConfig, cores_allowed
from training.dataset import TrainingData
from training.pipeline import fit

PARTS = ("tickers", "steps", "processes", "darts")  # the comparisons, in the order they run
PROCESSES = 2  # the data-parallel processes compared with one, as many as the cores of the machine measured
MS = 1000.0
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
        config = ModelConfig(mode=mode, n_features=len(spec.names), scaling="global")
        trained = fit(config, data, train, validate=False)
        out[f"{mode}_rows_per_s"] = trained.result.rows / trained.result.seconds
        if mode == "latent":  # the validation batches count towards the peak too
            loop.evaluate_loss(trained.model, batches_for(config, data, train).validation())
    out["peak_rss_bytes"] = float(peak_rss_bytes())
    return out


def run_child(args: list[str]) -> dict[str, float]:
    """``python -m bench.train_speed`` with ``args`` in a child process; the JSON line it prints."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.train_speed", *args], check=True, capture_output=True, text=True
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def latent_epoch(
    data: TrainingData, train: TrainConfig, world: distributed.World, cell: str, scaling: str
) -> dict[str, float]:
    """One latent training epoch of this process's shard: rows/s over every process, and this process's CPU.

    The CPU seconds are the process's (every thread, gloo's too) over the
    epoch and its setup (the model wrapped, the optimiser built), from when
    every process has loaded its data; ``busy`` is their share of the wall
    seconds over the same span (below 1: the process waited, for a core or for
    the others).
    """
    config = ModelConfig(cell=cell, n_features=len(data.features), scaling=scaling)
    source = batches_for(config, data, train, world.shard)
    # what a process does once, before its first step, stays off the clocks, as it is for a lone process that
    # trained before: the first optimiser imports torch's compiler stack, the first GRU step loads the fused
    # kernel and allocates the buffers of the shard's shape
    torch.set_num_threads(train.threads or cores_allowed())
    warm = Forecaster(config)
    torch.optim.Adam(warm.parameters())
    warm(next(iter(source.epoch(np.random.default_rng(train.seed)))).x)[0].sum().backward()
    torch.manual_seed(train.seed)
    model = Forecaster(config)
    world.sum([0.0])  # the processes meet first: no process's clock counts the wait for another's loading
    cpu, clock = time.process_time(), time.perf_counter()
    result = loop.train(model, source, train, validate=False, world=world)
    cpu, clock = time.process_time() - cpu, time.perf_counter() - clock
    return {"rows_per_s": result.rows / result.seconds, "cpu_seconds": cpu, "busy": cpu / clock}


def load_universe(folder: Path, cache: Path) -> TrainingData:
    spec = FeatureSpec(DEFAULT_FEATURES, ModelConfig().horizon)
    return TrainingData.from_series(
        load_series("parquet", spec, FeatureCache(cache), path=str(folder)), spec.names, spec.horizon
    )


def parallel_rank(folder: Path, cache: Path, train: TrainConfig, out: Path, cell: str, scaling: str) -> None:
    """One of the data-parallel processes: a latent epoch on its shard, written to ``out``.``rank``."""
    world = distributed.join("cpu")
    try:
        measured = latent_epoch(load_universe(folder, cache), train, world, cell, scaling)
        out.with_suffix(f".{world.rank}").write_text(json.dumps(measured))
    finally:
        distributed.leave()


def independent_rank(folder: Path, cache: Path, train: TrainConfig, out: Path, cell: str, scaling: str) -> None:
    """One of two processes that each train a whole latent epoch at once, with no exchange: the cores' own ceiling."""
    measured = latent_epoch(load_universe(folder, cache), train, distributed.World(), cell, scaling)
    out.with_suffix(f".{os.environ['RANK']}").write_text(json.dumps(measured))


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def universe(args: argparse.Namespace) -> None:
    """Print the comparisons of the module docstring that ``args.parts`` names, in the order it lists them."""
    print(f"cores {os.cpu_count()}; load average before: {load_average()}")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        if "tickers" in args.parts:
            tickers_table(args, work)
        if "steps" in args.parts:
            for cell in args.cells:
                step_costs(args, cell)
        if "processes" in args.parts:
            processes(args, work)
        if "darts" in args.parts:
            ar_darts.ar_against_darts(args, work)
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
    """One latent training epoch in one process (one thread, two threads) and in two, at each ticker count.

    Each round runs the three one after another, the two compared first, and
    prints them with the load average before it and each process's CPU
    seconds and busy share (``latent_epoch``). The CPU ceiling is the ratio
    two free cores would give if neither process ever waited: one process's
    CPU seconds over the busier of the two processes'. The part of a step
    that does not halve with its batch (the ``steps`` part) keeps it under 2.

    Each round also runs two processes that each train the whole epoch at
    once, with no exchange between them: their rows/s together over one
    process's alone is what the two cores give this work when both are
    busy, whatever the code (the cores' column). Where cores slow each other
    (caches, memory bandwidth, virtual cores on one physical core), it is
    below 2, and no data-parallel run can do better.
    """
    one_thread = TrainConfig(epochs=1, threads=1, progress=False)
    two_threads = TrainConfig(epochs=1, threads=PROCESSES, progress=False)
    summary = []
    for cell, n in itertools.product(args.cells, args.parallel_tickers):
        folder, cache = work / f"p{n}", work / f"pcache{n}"
        if not folder.exists():
            write_universe(folder, n)
        data = load_universe(folder, cache)
        streams = len(next(iter(batches_for(ModelConfig(), data, one_thread).epoch(np.random.default_rng(0)))).x)
        print(
            f"latent {cell}, {args.scaling} scaling, {n} tickers ({streams} streams), one training epoch per run, "
            f"{args.repeats} rounds;"
        )
        print("rows/s, CPU seconds and busy share of 1 process (1 thread), of 2 processes (1 thread each),")
        print("their ratio and its CPU ceiling, the cores' ceiling, and 1 process with 2 threads")
        print(
            f"{'round':>6}{'load':>6}{'1p rows/s':>11}{'cpu s':>7}{'busy':>6}{'2p rows/s':>11}{'cpu s each':>12}"
            f"{'busy each':>11}{'2p/1p':>7}{'ceiling':>9}{'cores':>7}{'2t rows/s':>11}{'busy':>6}"
        )
        ratios, ceilings, cores = [], [], []
        for k in range(args.repeats):
            load = os.getloadavg()[0]
            alone = latent_epoch(data, one_thread, distributed.World(), cell, args.scaling)
            out = work / "rank"
            distributed.spawn(PROCESSES, parallel_rank, folder, cache, one_thread, out, cell, args.scaling)
            ranks = [json.loads(out.with_suffix(f".{r}").read_text()) for r in range(PROCESSES)]
            distributed.spawn(PROCESSES, independent_rank, folder, cache, one_thread, out, cell, args.scaling)
            apart = [json.loads(out.with_suffix(f".{r}").read_text()) for r in range(PROCESSES)]
            cores.append(sum(a["rows_per_s"] for a in apart) / alone["rows_per_s"])
            # last: two threads of one process spin while either waits for a core, loading the machine
            threads = latent_epoch(data, two_threads, distributed.World(), cell, args.scaling)
            ratios.append(ranks[0]["rows_per_s"] / alone["rows_per_s"])
            ceilings.append(alone["cpu_seconds"] / max(r["cpu_seconds"] for r in ranks))
            cpus = "/".join(f"{r['cpu_seconds']:.2f}" for r in ranks)
            busy = "/".join(f"{r['busy']:.2f}" for r in ranks)
            print(
                f"{k + 1:>6}{load:>6.1f}{alone['rows_per_s']:>11.0f}{alone['cpu_seconds']:>7.2f}{alone['busy']:>6.2f}"
                f"{ranks[0]['rows_per_s']:>11.0f}{cpus:>12}{busy:>11}{ratios[-1]:>6.2f}x{ceilings[-1]:>8.2f}x"
                f"{cores[-1]:>6.2f}x{threads['rows_per_s']:>11.0f}{threads['busy']:>6.2f}"
            )
        summary.append((cell, n, statistics.median(ratios), max(ratios), statistics.median(ceilings), cores))
    print("2 processes / 1 process (1 thread each): median and best of the rounds; CPU and cores' ceilings: medians")
    for cell, n, median, best, ceiling, both in summary:
        print(
            f"{cell:>5} {n:>4} tickers: {median:.2f}x, best {best:.2f}x; CPU ceiling {ceiling:.2f}x, "
            f"cores' ceiling {statistics.median(both):.2f}x"
        )
    print(f"load average after the process comparison: {load_average()}")


def step_costs(args: argparse.Namespace, cell: str) -> None:
    """CPU milliseconds of one latent optimiser step of ``cell`` against the streams it reads, in one process, 1 thread.

    The bundled tickers cut into about ``streams`` pieces (``TrainConfig.streams``);
    each step is the loop's: forward, loss, backward, clipping, Adam. A line
    fitted to the fastest round of each width splits a step into a fixed part
    and a part per stream; two processes, each reading half of every batch,
    can at best divide the step's time by (fixed + n per stream) / (fixed + n/2 per stream).
    """
    torch.set_num_threads(1)
    data = TrainingData.prepare(sources.bundled(), DEFAULT_FEATURES, ModelConfig().horizon)
    config = ModelConfig(cell=cell, n_features=len(data.features), scaling=args.scaling)
    levels = torch.tensor(config.quantiles)
    batches = {}
    for n in args.step_streams:
        train = TrainConfig(streams=n, threads=1, progress=False)
        batches[n] = next(iter(batches_for(config, data, train).epoch(np.random.default_rng(train.seed))))
    cpu: dict[int, list[float]] = {n: [] for n in args.step_streams}
    for _ in range(args.repeats):
        for n, batch in batches.items():  # interleaved, so that every width sees the same load
            model = Forecaster(config).train()
            optimiser = torch.optim.Adam(model.parameters(), fused=True)  # as the loop's
            started = time.process_time()
            for _ in range(args.step_count):
                out, _, scale = model(batch.x, with_volatility=True)
                total, _ = loop.loss_sum(out, batch.y, levels, scale)
                optimiser.zero_grad(set_to_none=True)
                (total / max(batch.targets, 1)).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), TrainConfig().clip_norm, foreach=True)
                optimiser.step()
            cpu[n].append((time.process_time() - started) / args.step_count * MS)
    widths = np.array([len(b.x) for b in batches.values()], dtype=float)
    fastest = np.array([min(cpu[n]) for n in args.step_streams])
    per_stream, fixed = np.polyfit(widths, fastest, 1)
    print(
        f"latent optimiser step, {config.cell} {config.hidden_size}, {config.scaling} scaling, "
        f"bptt {TrainConfig().bptt}, 1 thread; "
        f"the fastest of {args.repeats} rounds of {args.step_count} steps; load average {load_average()}"
    )
    print(f"{'streams':>8}{'cpu ms':>8}{'ms per stream':>15}{'fitted ms':>11}{'2-process ceiling':>19}")
    for width, ms in zip(widths, fastest, strict=True):
        ceiling = (fixed + per_stream * width) / (fixed + per_stream * width / PROCESSES)
        print(f"{width:>8.0f}{ms:>8.1f}{ms / width:>15.3f}{fixed + per_stream * width:>11.1f}{ceiling:>18.2f}x")
    print(f"fitted: {fixed:.1f} ms per step whatever its streams, plus {per_stream:.3f} ms per stream")
