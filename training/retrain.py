"""The retrain job: fresh data, a challenger per mode, promotion only when better out of sample.

    lock -> fetch (yfinance from ``history_years`` ago, else the disk cache,
    else bundled) -> per mode: skip if the data holds nothing newer than the
    champion's -> train a challenger on all but the newest ``2 * holdout_days``
    days (the older of those validate) -> score challenger and champion on the
    newest ``holdout_days`` that neither has read -> promote if a one-sided
    paired Diebold-Mariano test on the daily losses says so
    (``training.promotion``), or there is no champion -> if so configured,
    refit the promoted challenger through the newest price and promote the
    refit -> job report

The champion scored is the one serving, whatever it is. A refit has read
every price up to its own day: it is scored on the holdout days after that,
and the challenger on the same days; if too few are left for the test, the
mode is skipped rather than scored in sample.

The job's progress and outcome are written to ``ARTIFACTS/jobs/<id>.json``
after every stage. A crash anywhere leaves the champion pointer untouched
(the registry only changes it by atomic rename after a verified load), and the
lock dies with the process.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data import sources
from data.feature_cache import FeatureCache, artifacts_cache
from data.features import DEFAULT_FEATURES, recent_split, through_end
from latentcast.errors import ConflictError, ForecastError
from models.checkpoint import build_from_checkpoint, checkpoint_offsets, checkpoint_young_offsets
from models.config import MODES, ModelConfig
from training.config import TrainConfig
from training.dataset import TrainingData, first_unseen_day
from training.distributed import Orders, World
from training.jobs import JobReport, JobStore, new_job_id
from training.lock import JobLock
from training.pipeline import Trained, checkpoint, fit
from training.promotion import check_rule, decide, newer_days, scored_from
from training.registry import Registry
from training.scoring import day_losses, holdout_loss, holdout_spans, score_on_holdout

logger = logging.getLogger(__name__)

LOCK_FILE = "retrain.lock"
DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class RetrainConfig:
    """What a retrain fetches, trains and requires of a challenger."""

    artifacts: Path
    tickers: tuple[str, ...] = ("AAPL", "GOOG", "IBM", "MSFT")
    source: str = "yfinance"  # "yfinance" falls back to the cache, then to bundled
    path: str | None = None  # for source "csv"
    history_years: int = 10  # how far back the prices go (yfinance is asked from then, never for all it has)
    holdout_days: int = 126  # the newest trading days, scored; as many before them validate
    refit: bool = False  # refit a promoted challenger through the newest price (docs/retraining.md: why not)
    modes: tuple[str, ...] = MODES
    level: float = 0.10  # promote when the one-sided DM test says the challenger is better at this level
    stale_days: int = 126  # or when it is not worse and has read this many trading days the champion never did
    features: tuple[str, ...] = DEFAULT_FEATURES
    # a first challenger (no champion to copy) is what `latentcast train` would make
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    as_of: str | None = None  # a date: only the prices before it, as a retrain run on that day would have seen

    def __post_init__(self) -> None:
        check_rule(self.level, self.stale_days)

    @property
    def cache_dir(self) -> Path:
        return self.artifacts / "cache" / "yfinance"


def fetch(config: RetrainConfig, download: sources.Downloader = sources.download_yfinance) -> sources.FreshPrices:
    """Prices for the job, and where they came from."""
    if config.source == "yfinance":
        start = (datetime.now(UTC) - timedelta(days=round(DAYS_PER_YEAR * config.history_years))).date().isoformat()
        fresh = sources.fetch_fresh(config.tickers, config.cache_dir, download=download, start=start)
    else:
        frame = sources.load(config.source, tickers=config.tickers, path=config.path)
        fresh = sources.FreshPrices(frame, config.source, f"source {config.source} as configured")
    frame = sources.between(fresh.frame, None, config.as_of) if config.as_of else fresh.frame
    return replace(fresh, frame=recent_history(frame, config.history_years))


def recent_history(prices: pd.DataFrame, years: int) -> pd.DataFrame:
    """The last ``years`` of ``prices`` (a cache or the bundled prices may hold more)."""
    first = prices["date"].max() - pd.Timedelta(days=round(DAYS_PER_YEAR * years))
    return prices[prices["date"] >= first].reset_index(drop=True)


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


def stale_reason(registry: Registry, mode: str, prices: pd.DataFrame) -> str | None:
    """Why ``prices`` hold nothing for ``mode`` to learn from, or None when they are newer than its champion's."""
    champion = registry.champion(mode)
    if champion is None:
        return None
    try:
        last = registry.get(champion).data_span.get("last")
    except ForecastError:
        return None  # an unreadable champion is replaced, whatever the data
    newest = prices["date"].max().date().isoformat()
    if last is not None and newest <= last:
        return f"the prices end on {newest}, no later than the data of champion {champion} ({last}): nothing new"
    return None


def refit(
    trained: Trained, prices: pd.DataFrame, cache: FeatureCache | None = None, world: World | None = None
) -> Trained:
    """``trained``'s architecture and features fit again through the newest price, for its best epoch count."""
    features, horizon = trained.data.features, trained.data.horizon
    data = TrainingData.prepare(prices, features, horizon, split=through_end, cache=cache)
    epochs = replace(trained.train_config, epochs=max(trained.result.best_epoch, 1))
    return fit(trained.model.config, data, epochs, validate=False, world=world)


def training_spans(data: TrainingData) -> dict[str, str]:
    """The days a model's training and validation covered, for the job report."""
    cut = data.split.to_dict()
    first = min(s.dates[0] for s in data.series)
    return {
        "train": f"{_day(first)} to before {cut['validation_start']}",
        "validation": f"{cut['validation_start']} to before {cut['test_start']}",
        "seen_until": _day(data.seen_until()),
    }


def challenge(
    registry: Registry,
    mode: str,
    prices: pd.DataFrame,
    config: RetrainConfig,
    source: str,
    orders: Orders,
    ready: Trained | None = None,
) -> dict[str, Any]:
    """Train a challenger of ``mode``, score it against the champion out of sample, promote it (refit) if better.

    The other processes of ``orders.world`` train beside this one what it sends them (``follow_retrain``).
    ``ready``: a challenger trained beforehand on these prices, used if of this architecture, features and split.
    """
    cache = artifacts_cache(config.artifacts)
    champion = registry.champion(mode)
    outcome: dict[str, Any] = {"mode": mode, "champion_before": champion}
    stale = stale_reason(registry, mode, prices)
    if stale is not None:
        outcome.update(skipped=True, promoted=False, reason=stale, champion_after=champion)
        return outcome
    model_config, features = challenger_setup(registry, mode, config)
    data = challenger_data(prices, features, model_config.horizon, config, cache)
    holdout = data.split.test_start
    outcome["holdout_start"] = _day(holdout)
    start: np.datetime64 | None = None
    if champion is None:
        why = "no champion yet"
    else:
        try:
            unread = first_unseen_day(registry.get(champion).data_span)
            start, why = scored_from(champion, unread, prices, holdout, model_config.horizon)
        except ForecastError as exc:
            why = f"champion {champion} cannot be scored ({exc})"
        else:
            if start is None:
                outcome.update(skipped=True, promoted=False, reason=why, champion_after=champion)
                return outcome
    orders.send((model_config, features))
    mine = None if ready is None else (ready.model.config, ready.data.features, ready.data.split)
    same = mine == (model_config, tuple(features), data.split)
    trained = ready if ready is not None and same else fit(model_config, data, config.train, world=orders.world)
    made = checkpoint(trained, source)
    version = registry.register(made).version
    offsets = checkpoint_offsets(made, trained.model.config, version)  # both are scored as they would serve
    outcome.update(challenger=version, challenger_span=training_spans(data), trained_beforehand=trained is ready)
    levels = model_config.quantiles
    promote, reason = True, why
    if start is not None and champion is not None:
        scored = champion
        try:
            scored_config = ModelConfig.from_dict(registry.get(scored).config)
            horizon = min(model_config.horizon, scored_config.horizon)
            keep = [q for q in levels if q in scored_config.quantiles]
            loaded = registry.load(scored)
            scored_model, scored_scaler = build_from_checkpoint(loaded, scored)
            scored_offsets = checkpoint_offsets(loaded, scored_model.config, scored)
            champion_spans = holdout_spans(scored_model, scored_scaler, prices, start, scored_offsets, cache)
        except ForecastError as exc:
            reason = f"champion {champion} cannot be scored ({exc})"
        else:
            outcome.update(champion_scored=scored, champion_scored_is=why)
            unseen = first_unseen_day(registry.get(scored).data_span)
            outcome["champion_seen_until"] = _day(unseen - np.timedelta64(1, "D"))
            outcome["scored_from"] = _day(start)
            spans = holdout_spans(trained.model, data.scaler, prices, start, offsets, cache)
            outcome["champion_loss"] = holdout_loss(champion_spans, scored_model.config.quantiles, horizon, keep)
            outcome["challenger_loss"] = holdout_loss(spans, levels, horizon, keep)
            verdict = decide(
                day_losses(spans, levels, horizon, keep),
                day_losses(champion_spans, scored_model.config.quantiles, horizon, keep),
                horizon,
                config.level,
                config.stale_days,
                newer_days(prices, unseen, holdout),
            )
            outcome["test"] = verdict.to_dict()
            promote, reason = verdict.promote, verdict.reason
    if "challenger_loss" not in outcome:
        outcome["challenger_loss"] = score_on_holdout(
            trained.model, data.scaler, prices, holdout, model_config.horizon, levels, offsets, cache
        )
    orders.send(promote and config.refit)
    if promote:
        promoted = (
            _refit_version(registry, trained, prices, source, version, outcome, orders) if config.refit else version
        )
        registry.promote(promoted)
    outcome.update(promoted=promote, reason=reason, champion_after=registry.champion(mode))
    logger.info("%s: %s %s (%s)", mode, version, "promoted" if promote else "not promoted", reason)
    return outcome


def _refit_version(
    registry: Registry,
    trained: Trained,
    prices: pd.DataFrame,
    source: str,
    parent: str,
    outcome: dict[str, Any],
    orders: Orders,
) -> str:
    """Register the refit of ``parent`` and record it in ``outcome``; returns its version."""
    again = refit(trained, prices, artifacts_cache(registry.root), orders.world)
    # a refit has no validation span to fit conformal offsets on: it keeps its parent's
    saved = registry.load(parent)
    offsets = checkpoint_offsets(saved, trained.model.config, parent)
    young = checkpoint_young_offsets(saved, trained.model.config, parent)
    version = registry.register(checkpoint(again, source, refit_of=parent, offsets=offsets, young=young)).version
    outcome["refit"] = {
        "version": version,
        "of": parent,
        "epochs": again.result.epochs_run,
        "seen_until": _day(again.data.seen_until()),
        "seconds": round(again.result.seconds, 2),
    }
    return version


def challenger_data(
    prices: pd.DataFrame, features: Sequence[str], horizon: int, config: RetrainConfig, cache: FeatureCache | None
) -> TrainingData:
    """The challenger's data: trained on all but the newest ``2 * holdout_days``, validated on the older half."""
    split = partial(recent_split, holdout_days=config.holdout_days)
    return TrainingData.prepare(prices, features, horizon, split=split, cache=cache)


def _day(day: np.datetime64) -> str:
    return str(np.datetime_as_string(day, unit="D"))


def run_retrain(
    config: RetrainConfig,
    job_id: str | None = None,
    download: sources.Downloader = sources.download_yfinance,
    world: World | None = None,
    ready: Mapping[str, Trained] | None = None,
) -> JobReport:
    """Run one retrain job to the end and return its report (also saved in the job store, when the disk allows).

    Once started, a failure anywhere (a full disk or an unwritable artifacts folder included) is not
    raised: it ends the job as ``failed`` with an error that says why, and the champion unchanged.
    In a ``world`` of several processes this is the main one: it alone fetches, registers and
    decides, and the others train what it sends them (``follow_retrain``). ``ready``: challengers
    trained beforehand on the job's prices, by mode (``challenge``).
    """
    orders = Orders(world or World())
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
            orders.send(fresh.frame)
            job.data = {**sources.price_span(fresh.frame), "source": fresh.source, "reason": fresh.reason}
            registry = Registry(config.artifacts)
            for mode in config.modes:
                job.stage = f"training {mode}"
                jobs.save(job)
                job.modes.append(
                    challenge(registry, mode, fresh.frame, config, fresh.source, orders, (ready or {}).get(mode))
                )
                jobs.save(job)
        skipped = [m for m in job.modes if m.get("skipped")]
        if skipped and len(skipped) == len(job.modes):
            reasons = "; ".join(f"{m['mode']}: {m['reason']}" for m in skipped)
            job.finish("skipped", time.perf_counter() - started, reasons)
        else:
            job.finish("succeeded", time.perf_counter() - started)
    except ConflictError as exc:
        job.finish("skipped", time.perf_counter() - started, str(exc))
    except Exception as exc:
        logger.exception("retrain job %s failed", job.job_id)
        job.finish("failed", time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
    orders.close()
    try:
        jobs.save(job)
    except OSError:
        logger.exception("could not write the report of job %s", job.job_id)
    return job
