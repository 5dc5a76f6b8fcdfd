"""A replay of the retrain policy through history: what each policy would have served, and how it did.

From a first day on, every ``every`` trading days, the real retrain job
(``run_retrain``, the same code path and rule as the scheduler's) runs on the
prices known that day (a CSV of the prices up to it). What it promotes serves
every forecast from that day's close until the next retrain. Four contenders
are served on the same days and share the trainings they have in common:

- **policy**: the retrain job as configured (its champion after each job);
- **never**: the first champion, never retrained;
- **always**: every challenger promoted as it was trained, whatever its test;
- **refit**: every challenger refit through the day's price and served, without a test.

The challengers are the policy's own (a challenger copies its champion's
architecture and seed, so every contender's challenger of a day is the same
model); a refit the job made is reused, the others are made here as the job
makes them (``training.retrain.refit``, on the prices the job read).

The decisions are in order (each job scores against the champion the last
one left), the trainings need not be: with ``jobs`` above 1 every day's
challenger and refit are trained first, at once (``training.replay_trainings``),
and each day's job then runs with its challenger ready, by the same code and
rule; the versions served and their scores are those of the sequential run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data import sources
from data.features import through_end
from latentcast.errors import ConfigError, DataError
from models.checkpoint import build_from_checkpoint, checkpoint_offsets
from models.config import MODES
from training.config import TrainConfig
from training.dataset import TrainingData
from training.evaluate import SpanForecasts
from training.pipeline import Trained, checkpoint, fit
from training.registry import Registry
from training.replay_trainings import train_days
from training.retrain import RetrainConfig, fetch, run_retrain
from training.scoring import day_losses, holdout_spans

logger = logging.getLogger(__name__)

CONTENDERS = ("policy", "never", "always", "refit")


@dataclass(frozen=True)
class ReplayConfig:
    """What to replay: the retrain job as configured (``retrain``: its source, tickers, rule and models),
    from ``start`` (a date; the first trading day on or after it), every ``every`` trading days."""

    retrain: RetrainConfig
    start: str = "2010-01-04"
    every: int = 21
    mode: str = "latent"  # one mode per replay: the cheaper to train (ar reads a whole window for every row)

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ConfigError(f"every must be a positive number of trading days, got {self.every}")
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; valid modes: {', '.join(MODES)}")


@dataclass
class Replay:
    """The replay's retrain days, jobs, served versions and daily scores."""

    days: list[str]  # retrain days
    served: dict[str, list[str]]  # contender -> version served from each retrain day
    seen_until: dict[str, str]  # version -> last day of prices it read
    jobs: list[dict[str, Any]]  # the policy's job outcome of each retrain day
    scores: pd.DataFrame  # one row per contender and origin day: loss, coverage
    horizon: int
    seconds: float = 0.0
    trainings: dict[str, int] = field(default_factory=dict)


def retrain_days(prices: pd.DataFrame, start: str, every: int) -> list[pd.Timestamp]:
    """Every ``every``-th trading day of ``prices`` from the first on or after ``start``."""
    days = pd.DatetimeIndex(sorted(prices["date"].unique()))
    first = int(days.searchsorted(pd.Timestamp(start)))
    if first >= len(days) - 1:
        raise DataError(f"the prices end on {days[-1].date()}: nothing to replay from {start}")
    return list(days[first::every])


def refit_version(
    registry: Registry, parent: str, prices: pd.DataFrame, train: TrainConfig, source: str, again: Trained | None = None
) -> str:
    """``parent`` fit again through the newest price for its best epoch count (as the retrain job refits),
    registered with its parent's conformal offsets; returns the refit's version. ``again``: that refit,
    trained beforehand (``training.replay_trainings``)."""
    if again is None:
        meta = registry.get(parent)
        model, scaler = build_from_checkpoint(registry.load(parent), parent)
        data = TrainingData.prepare(prices, scaler.features, model.config.horizon, split=through_end)
        epochs = replace(train, epochs=max(int(meta.metrics["best_epoch"]), 1))
        again = fit(model.config, data, epochs, validate=False)
    offsets = checkpoint_offsets(registry.load(parent), again.model.config, parent)
    return registry.register(checkpoint(again, source, refit_of=parent, offsets=offsets)).version


def replay(config: ReplayConfig, work: Path, progress: Callable[[str], None] = logger.info, jobs: int = 1) -> Replay:
    """Run the policy's jobs through history in ``work`` (its registry, jobs and price files) and score
    what each contender served. ``jobs`` above 1: every day's trainings first, on that many processes
    (``training.replay_trainings``), then the jobs in order, each with its day's challenger ready."""
    started = time.perf_counter()
    retrain = config.retrain
    prices = sources.load(retrain.source, tickers=retrain.tickers, path=retrain.path)
    days = retrain_days(prices, config.start, config.every)
    (work / "prices").mkdir(parents=True, exist_ok=True)
    job_config = replace(retrain, artifacts=work, source="csv", modes=(config.mode,))
    configs = []
    for day in days:
        path = work / "prices" / f"{day.date()}.csv"
        prices[prices["date"] <= day].to_csv(path, index=False)
        configs.append(replace(job_config, path=str(path)))
    ready = train_days(configs, config.mode, jobs) if jobs > 1 else None
    registry = Registry(work)
    served: dict[str, list[str]] = {name: [] for name in CONTENDERS}
    jobs_done: list[dict[str, Any]] = []
    trainings = {"challengers": 0, "refits made by the job": 0, "refits made for the refit contender": 0}
    for number, (day, day_config) in enumerate(zip(days, configs, strict=True), 1):
        job_id = f"{day:%Y%m%d}T000000-{number:06x}"  # named by its day, in the job store's pattern
        challenger_ready = {config.mode: ready[number - 1].challenger} if ready else None
        job = run_retrain(day_config, job_id=job_id, ready=challenger_ready)
        if job.status != "succeeded":
            raise DataError(f"the retrain of {day.date()} ended {job.status}: {job.error}")
        [outcome] = job.modes
        jobs_done.append({"day": str(day.date()), **outcome})
        challenger, champion = outcome["challenger"], outcome["champion_after"]
        trainings["challengers"] += 1
        made = outcome.get("refit", {}).get("version")
        trainings["refits made by the job"] += made is not None
        if made is None:
            known = fetch(day_config).frame  # the prices the job read
            again = ready[number - 1].refit if ready else None
            made = refit_version(registry, challenger, known, retrain.train, "csv", again)
            trainings["refits made for the refit contender"] += 1
        served["policy"].append(champion)
        served["never"].append(served["policy"][0])
        served["always"].append(challenger)
        served["refit"].append(made)
        progress(f"{day.date()} ({number}/{len(days)}): {outcome['reason']}")
    versions = {v for name in CONTENDERS for v in served[name]}
    seen = {v: str(registry.get(v).data_span.get("seen_until", registry.get(v).data_span["last"])) for v in versions}
    scores, horizon = score_served(registry, prices, days, served)
    return Replay(
        days=[str(d.date()) for d in days],
        served=served,
        seen_until=seen,
        jobs=jobs_done,
        scores=scores,
        horizon=horizon,
        seconds=time.perf_counter() - started,
        trainings=trainings,
    )


def score_served(
    registry: Registry, prices: pd.DataFrame, days: list[pd.Timestamp], served: dict[str, list[str]]
) -> tuple[pd.DataFrame, int]:
    """Each contender's daily pinball loss (horizons 1..H, all levels, mean over tickers) and coverage of the
    outer band, over the origins each version served: from its retrain day to the day before the next."""
    trading = pd.DatetimeIndex(sorted(prices["date"].unique()))
    windows = [(day, days[i + 1] if i + 1 < len(days) else None) for i, day in enumerate(days)]
    cache: dict[tuple[str, pd.Timestamp], pd.DataFrame] = {}
    frames, horizon = [], 0
    for name, versions in served.items():
        for version, (first, after) in zip(versions, windows, strict=True):
            if (version, first) not in cache:
                loaded = registry.load(version)
                model, scaler = build_from_checkpoint(loaded, version)
                horizon = model.config.horizon
                # the targets of the window's last origin lie up to H trading days after it
                last = int(trading.searchsorted(after)) + horizon if after else len(trading)
                end = trading[min(len(trading) - 1, last)]
                spans = holdout_spans(
                    model,
                    scaler,
                    prices[prices["date"] <= end],
                    np.datetime64(first.date()),
                    checkpoint_offsets(loaded, model.config, version),
                )
                daily = pd.DataFrame(
                    {
                        "loss": day_losses(spans, model.config.quantiles, horizon, model.config.quantiles),
                        "coverage": day_coverage(spans, horizon),
                    }
                )
                cache[(version, first)] = daily[(daily.index >= first) & ((daily.index < after) if after else True)]
            frames.append(cache[(version, first)].assign(contender=name, version=version))
    scores = pd.concat(frames).rename_axis("date").reset_index()
    return scores.dropna(subset=["loss"]), horizon


def day_coverage(spans: Sequence[SpanForecasts], horizon: int) -> pd.Series:
    """Share of each origin day's known outcomes (horizons 1..H, all tickers) inside the outer band."""
    frames = []
    for span in spans:
        assert span.quantiles is not None
        actual = span.actual[:, :horizon]  # (N, H)
        low, high = span.quantiles[:, :horizon, 0], span.quantiles[:, :horizon, -1]
        known = np.isfinite(actual)
        inside = np.where(known, (actual >= low) & (actual <= high), False).sum(axis=1)
        count = known.sum(axis=1)
        share = np.divide(inside, count, out=np.full(len(count), np.nan), where=count > 0)
        frames.append(pd.DataFrame({"date": span.dates, "coverage": share}))
    return pd.concat(frames).dropna().groupby("date")["coverage"].mean().sort_index()
