"""The retrain job: fresh data, a challenger per mode, promotion only when better.

    lock -> fetch (yfinance, else the disk cache, else bundled) -> per mode:
    train a challenger on all but the newest holdout -> score challenger and
    champion on that same holdout -> promote if the challenger's loss is lower
    by the margin (or there is no champion) -> job report

The job's progress and outcome are written to ``ARTIFACTS/jobs/<id>.json``
after every stage. A crash anywhere leaves the champion pointer untouched
(the registry only changes it by atomic rename after a verified load), and the
lock dies with the process.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data import sources
from data.errors import ConflictError, ForecastError
from data.features import DEFAULT_FEATURES, Scaler, build_series
from models.checkpoint import build_from_checkpoint
from models.config import MODES, ModelConfig
from models.forecaster import Forecaster
from training.config import TrainConfig
from training.dataset import TrainingData
from training.evaluate import SpanForecasts, model_forecasts
from training.jobs import JobReport, JobStore, new_job_id
from training.lock import JobLock
from training.metrics import pinball
from training.pipeline import checkpoint, fit
from training.registry import Registry
from training.scoring import pooled

logger = logging.getLogger(__name__)

LOCK_FILE = "retrain.lock"


@dataclass(frozen=True)
class RetrainConfig:
    """What a retrain fetches, trains and requires of a challenger."""

    artifacts: Path
    tickers: tuple[str, ...] = ("AAPL", "GOOG", "IBM", "MSFT")
    source: str = "yfinance"  # "yfinance" falls back to the cache, then to bundled
    path: str | None = None  # for source "csv"
    history_start: str | None = None  # first date asked of yfinance (None: all it has)
    modes: tuple[str, ...] = MODES
    margin: float = 0.005  # relative: the challenger's loss must be below champion * (1 - margin)
    features: tuple[str, ...] = DEFAULT_FEATURES
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def cache_dir(self) -> Path:
        return self.artifacts / "cache" / "yfinance"


def fetch(config: RetrainConfig, download: sources.Downloader = sources.download_yfinance) -> sources.FreshPrices:
    """Prices for the job, and where they came from."""
    if config.source == "yfinance":
        return sources.fetch_fresh(config.tickers, config.cache_dir, download=download, start=config.history_start)
    frame = sources.load(config.source, tickers=config.tickers, path=config.path)
    return sources.FreshPrices(frame, config.source, f"source {config.source} as configured")


def holdout_loss(spans: Sequence[SpanForecasts], levels: Sequence[float], horizon: int, keep: Sequence[float]) -> float:
    """Mean pinball loss over horizons 1..``horizon`` and quantile levels ``keep``."""
    everything = pooled(spans)
    assert everything.quantiles is not None
    columns = [list(levels).index(level) for level in keep]
    q = everything.quantiles[:, :horizon][:, :, columns]
    return pinball(everything.actual[:, :horizon], q, np.asarray(keep))


def score_on_holdout(
    model: Forecaster,
    scaler: Scaler,
    prices: pd.DataFrame,
    holdout_start: np.datetime64,
    horizon: int,
    keep: Sequence[float],
) -> float:
    """Holdout loss of a model, its state warmed on everything before the holdout."""
    series = build_series(prices, scaler.features, model.config.horizon)
    starts = [int(np.searchsorted(s.dates, holdout_start)) for s in series]
    spans = model_forecasts(model, scaler, series, starts)
    return holdout_loss(spans, model.config.quantiles, horizon, keep)


def challenger_setup(registry: Registry, mode: str, config: RetrainConfig) -> tuple[ModelConfig, tuple[str, ...]]:
    """The architecture and features of the next challenger of ``mode``.

    A challenger copies its champion's (so that the two differ only in what
    they learned from the fresher data); without a readable champion it
    takes the configured defaults.
    """
    champion = registry.champion(mode)
    if champion is not None:
        try:
            meta = registry.get(champion)
            return ModelConfig.from_dict(meta.config), meta.features or config.features
        except ForecastError as exc:
            logger.warning("champion %s unreadable (%s): the challenger takes the defaults", champion, exc)
    return ModelConfig.from_dict({**config.model.to_dict(), "mode": mode}), config.features


def challenge(
    registry: Registry, mode: str, prices: pd.DataFrame, config: RetrainConfig, source: str
) -> dict[str, Any]:
    """Train a challenger of ``mode``, score it against the champion, promote it if better."""
    model_config, features = challenger_setup(registry, mode, config)
    data = TrainingData.prepare(prices, features, model_config.horizon)
    trained = fit(model_config, data, config.train)
    version = registry.register(checkpoint(trained, source)).version
    champion = registry.champion(mode)
    outcome: dict[str, Any] = {
        "mode": mode,
        "challenger": version,
        "champion_before": champion,
        "holdout_start": data.split.to_dict()["test_start"],
    }
    holdout = data.split.test_start
    levels = model_config.quantiles
    if champion is None:
        promote, reason = True, "no champion yet"
    else:
        try:
            champion_config = ModelConfig.from_dict(registry.get(champion).config)
            horizon = min(model_config.horizon, champion_config.horizon)
            keep = [q for q in levels if q in champion_config.quantiles]
            champion_model, champion_scaler = build_from_checkpoint(registry.load(champion), champion)
            outcome["champion_loss"] = score_on_holdout(champion_model, champion_scaler, prices, holdout, horizon, keep)
        except ForecastError as exc:
            promote, reason = True, f"champion {champion} cannot be scored ({exc})"
        else:
            outcome["challenger_loss"] = score_on_holdout(trained.model, data.scaler, prices, holdout, horizon, keep)
            bar = outcome["champion_loss"] * (1 - config.margin)
            promote = outcome["challenger_loss"] < bar
            verb = "below" if promote else "not below"
            reason = (
                f"challenger loss {outcome['challenger_loss']:.6f} is {verb} champion loss "
                f"{outcome['champion_loss']:.6f} x (1 - margin {config.margin}) = {bar:.6f}"
            )
    if "challenger_loss" not in outcome:
        outcome["challenger_loss"] = score_on_holdout(
            trained.model, data.scaler, prices, holdout, model_config.horizon, levels
        )
    if promote:
        registry.promote(version)
    outcome.update(promoted=promote, reason=reason, champion_after=registry.champion(mode))
    logger.info("%s: %s %s (%s)", mode, version, "promoted" if promote else "not promoted", reason)
    return outcome


def price_span(prices: pd.DataFrame) -> dict[str, Any]:
    return {
        "tickers": sorted(prices["ticker"].unique().tolist()),
        "rows": len(prices),
        "first": prices["date"].min().date().isoformat(),
        "last": prices["date"].max().date().isoformat(),
    }


def run_retrain(
    config: RetrainConfig,
    job_id: str | None = None,
    download: sources.Downloader = sources.download_yfinance,
) -> JobReport:
    """Run one retrain job to the end and return its report (also saved in the job store, when the disk allows).

    Once started, a failure anywhere (a full disk or an unwritable artifacts folder included) is not
    raised: it ends the job as ``failed`` with an error that says why, and the champion unchanged.
    """
    jobs = JobStore(config.artifacts / "jobs")
    job = jobs.get(job_id) if job_id and jobs.exists(job_id) else JobReport(job_id=job_id or new_job_id())
    job.start(os.getpid())
    started = time.perf_counter()
    try:
        # the first write: on a full disk or an unwritable folder the job fails here, before any training
        jobs.save(job)
        with JobLock(config.artifacts / LOCK_FILE, job.job_id) as lock:
            if lock.recovered:
                job.recovered_lock = lock.recovered.__dict__
                logger.warning("recovered a stale retrain lock from %s", lock.recovered)
            job.stage = "fetching data"
            jobs.save(job)
            fresh = fetch(config, download)
            job.data = {**price_span(fresh.frame), "source": fresh.source, "reason": fresh.reason}
            registry = Registry(config.artifacts)
            for mode in config.modes:
                job.stage = f"training {mode}"
                jobs.save(job)
                job.modes.append(challenge(registry, mode, fresh.frame, config, fresh.source))
                jobs.save(job)
        job.finish("succeeded", time.perf_counter() - started)
    except ConflictError as exc:
        job.finish("skipped", time.perf_counter() - started, str(exc))
    except Exception as exc:
        logger.exception("retrain job %s failed", job.job_id)
        job.finish("failed", time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
    try:
        jobs.save(job)
    except OSError:
        logger.exception("could not write the report of job %s", job.job_id)
    return job
