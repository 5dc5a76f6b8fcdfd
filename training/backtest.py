"""Walk-forward backtest: expanding-window folds, each trained anew, judged over many methods at once.

This is the verdict on ar against latent (``latentcast compare`` is one fold
of it). The newest ``folds * test_days`` trading days are cut into ``folds``
consecutive test blocks. Fold k learns from every day before its block (the
last ``validation_days`` of them validate, for early stopping), trains ar
and latent once per seed and fits the baselines on its training and
validation spans, then forecasts its block as ``compare`` does (one forecast
per day after its close, no refitting inside the block). No fold reads a
price of its own test block before forecasting it.

Equal budgets: with ``epoch_steps`` (the default), both modes train for at
most ``epochs * epoch_steps`` optimiser steps, validated every
``epoch_steps`` steps, instead of one pass of the data per epoch (which
takes ar about ten times latent's steps). Every training is a ``Trial``,
run here, on ``jobs`` local processes or as tasks on a Ray cluster
(``training.trials``); one that
fails is listed in the report and the rest are pooled.

Scores per fold and pooled over folds: pinball loss, MAE ratio to the random
walk and the coverage of each method's outer band, per seed for the models,
with Kupiec's and Christoffersen's tests of the band at horizon 1. The
verdicts (``training.verdicts.judge``): per horizon the model confidence set
of every method with quantiles, and Diebold-Mariano tests of each model
against the other and the baselines, on per-day pinball losses averaged over
seeds and tickers, Holm-adjusted across the report, called only where the
sign holds in most seeds.

With ``BacktestConfig.scalings``, each fold also trains ar and latent with
those other scalings (methods ``latent_global``, ``ar_global``, ...), on the
same data and seeds, and each is tested against the model of the same mode
with the configuration's own scaling. With ``TrainConfig.pretrain_paths``,
the models are pretrained on synthetic paths (``training.pretrain``) and
each mode is also trained without (``latent_unpretrained``), tested against
its pretrained twin. With ``BacktestConfig.closes_only`` (for a model whose
variance reads ``range_or_returns``) each model is also scored with every
range not sent (``latent_unranged``: a session of closes only), and each
mode is trained as a model of closes (``latent_closes``: returns alone,
their variance the squared returns), on the same seeds; both are tested
against it.
With ``variance_scales``, each mode is also trained without them
(``latent_onevariance``), tested against it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from latentcast.errors import ConfigError, DataError
from models.config import MODES, SCALINGS, ModelConfig
from training.compare import baseline_spans
from training.config import TrainConfig
from training.coverage_tests import band_tests
from training.evaluate import SpanForecasts
from training.fanout import run_trials
from training.har import series_ranges
from training.methods import CLOSES, ONE_VARIANCE, UNPRETRAINED, UNRANGED, label, pairs, scaled
from training.scoring import pooled, score
from training.search import Search, with_choice
from training.significance import SIGNIFICANCE
from training.trials import Trial, TrialResult, failures, fold_data
from training.verdicts import MCS_SIZE, judge

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BacktestConfig:
    """How many folds, how long, and how many training runs per fold."""

    folds: int = 3
    test_days: int = 126  # trading days of each test block (about six months)
    validation_days: int = 126
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    scalings: tuple[str, ...] = ()  # other scalings trained beside the model's own, each tested against it
    epoch_steps: int | None = 50  # optimiser steps per epoch in both modes (equal budgets); None: passes
    closes_only: bool = False  # also score the models without ranges, against models of closes (module doc)

    def __post_init__(self) -> None:
        for name in ("folds", "test_days", "validation_days", "epoch_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        if not self.seeds:
            raise ConfigError("the backtest needs at least one seed")
        unknown = [s for s in self.scalings if s not in SCALINGS]
        if unknown:
            raise ConfigError(f"unknown scaling {unknown[0]!r}; valid scalings: {', '.join(SCALINGS)}")


@dataclass(frozen=True)
class Fold:
    """One expanding-window fold: learn before ``test_start``, forecast up to ``test_end``."""

    index: int
    validation_start: np.datetime64
    test_start: np.datetime64
    test_end: np.datetime64 | None  # exclusive; None: to the end of the data

    def to_dict(self) -> dict[str, Any]:
        return {
            "fold": self.index,
            "validation_start": _day(self.validation_start),
            "test_start": _day(self.test_start),
            "test_end": None if self.test_end is None else _day(self.test_end),
        }


@dataclass
class Backtest:
    """Everything the backtest report shows."""

    created: str
    config: dict[str, Any]
    folds: list[dict[str, Any]]  # per fold: its dates and each method's scores
    pooled: dict[str, dict[str, dict[str, list[float | None]]]]  # method -> horizon -> metric -> per seed
    tests: list[dict[str, Any]]  # Diebold-Mariano results, Holm-adjusted, with their verdicts
    confidence_sets: list[dict[str, Any]]  # per horizon, the model confidence set at ``MCS_SIZE``
    coverage_tests: dict[str, list[dict[str, float | int]]]  # method -> per seed, Kupiec and Christoffersen
    trainings: dict[str, list[dict[str, Any]]]  # model -> per fold and seed: steps, epochs, best epoch, seconds
    failures: list[dict[str, Any]]  # trials that failed, and why
    search: dict[str, Any] | None  # the per-mode choices and their trials, or None: the configuration as given
    forecasts: int  # origins per method, all folds
    seconds: float  # wall time of the whole backtest

    def to_json(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "config": self.config,
            "folds": self.folds,
            "pooled": self.pooled,
            "diebold_mariano": self.tests,
            "confidence_sets": self.confidence_sets,
            "coverage_tests": self.coverage_tests,
            "trainings": self.trainings,
            "failures": self.failures,
            "search": self.search,
            "forecasts": self.forecasts,
            "seconds": self.seconds,
            "significance_level": SIGNIFICANCE,
            "mcs_size": MCS_SIZE,
        }


def make_folds(prices: pd.DataFrame, config: BacktestConfig) -> list[Fold]:
    """The folds over the pooled trading days of ``prices``, oldest first."""
    days = np.unique(prices["date"].to_numpy())
    tested = config.folds * config.test_days
    if len(days) <= tested + config.validation_days + config.test_days:
        raise DataError(
            f"too few trading days for {config.folds} folds of {config.test_days} test days after "
            f"{config.validation_days} validation days: {len(days)}"
        )
    out = []
    for k in range(config.folds):
        start = len(days) - tested + k * config.test_days
        end = start + config.test_days
        out.append(Fold(k, days[start - config.validation_days], days[start], days[end] if end < len(days) else None))
    return out


def fold_trials(
    fold: Fold,
    model_config: ModelConfig,
    train_config: TrainConfig,
    seeds: Sequence[int],
    scalings: Sequence[str],
    search: Search | None = None,
    closes_only: bool = False,
) -> list[Trial]:
    """The trainings of one fold: each mode (and each other scaling of it, without pretraining when the
    models are pretrained, and as a model of closes with ``closes_only``) once per seed, with the search's
    choice for that mode if there is one."""
    variants = [(m, model_config.scaling, m) for m in MODES] + [(m, s, scaled(m, s)) for s in scalings for m in MODES]
    variants += [(m, model_config.scaling, scaled(m, UNPRETRAINED)) for m in MODES if train_config.pretrain_paths]
    variants += [(m, model_config.scaling, scaled(m, CLOSES)) for m in MODES if closes_only]
    variants += [(m, model_config.scaling, scaled(m, ONE_VARIANCE)) for m in MODES if model_config.variance_scales]
    out = []
    for mode, scaling, method in variants:
        scales = model_config.variance_scales if scaling == "volatility" and ONE_VARIANCE not in method else ()
        mix = model_config.quantile_scale if scales else "main"
        changed = {"mode": mode, "scaling": scaling, "variance_scales": scales, "quantile_scale": mix}
        config = ModelConfig.from_dict({**model_config.to_dict(), **changed})
        closes = method.endswith(CLOSES)
        if closes:  # a model of closes: returns alone, the variance of squared returns
            config = replace(config, n_features=1, variance_source="returns", range_ratio=1.0)
        pretrain_paths = 0 if method.endswith(UNPRETRAINED) else train_config.pretrain_paths
        train = replace(train_config, pretrain_paths=pretrain_paths)
        if search is not None and mode in search.choices:
            config, train = with_choice(search.choices[mode], config, train)
        span = (fold.validation_start, fold.test_start, fold.test_end)
        features, unranged = (("returns",), False) if closes else (None, closes_only and method == mode)
        out += [Trial(fold.index, method, seed, *span, config, train, True, features, unranged) for seed in seeds]
    return out


def search_span(prices: pd.DataFrame, config: BacktestConfig) -> tuple[np.datetime64, np.datetime64]:
    """Where a search may look: the first fold's validation span, ending where its test block (the first) starts."""
    first = make_folds(prices, config)[0]
    return first.validation_start, first.test_start


def scores(runs: list[list[SpanForecasts]], levels: Sequence[float]) -> dict[str, dict[str, list[float | None]]]:
    """Horizon -> metric -> one value per run (pinball, MAE ratio, coverage, forecasts)."""
    per_run = [score(pooled(run), levels) for run in runs]
    return {
        horizon: {
            metric: [r[horizon][metric] for r in per_run] for metric in ("pinball", "mae_ratio", "coverage", "count")
        }
        for horizon in per_run[0]
    }


def _collect(
    results: Sequence[TrialResult], fold: int
) -> tuple[dict[str, dict[int, list[SpanForecasts]]], dict[str, list[dict[str, Any]]]]:
    """One fold's successful trials: method -> seed -> per-ticker spans, and method -> their trainings."""
    spans: dict[str, dict[int, list[SpanForecasts]]] = {}
    trainings: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if r.trial.fold != fold or r.spans is None or r.training is None:
            continue
        spans.setdefault(r.trial.method, {})[r.trial.seed] = r.spans
        if r.unranged_spans is not None:
            spans.setdefault(scaled(r.trial.method, UNRANGED), {})[r.trial.seed] = r.unranged_spans
        trainings.setdefault(r.trial.method, []).append({"fold": fold, "seed": r.trial.seed, **r.training})
    return spans, trainings


def run_backtest(
    prices: pd.DataFrame,
    features: Sequence[str],
    model_config: ModelConfig,
    train_config: TrainConfig,
    config: BacktestConfig,
    source: str,
    jobs: int = 1,
    search: Search | None = None,
    ray_address: str | None = None,
) -> Backtest:
    """Train and score every fold on ``jobs`` processes (or the Ray cluster at ``ray_address``), pool the
    folds and judge every method at once.

    ``search``: per-mode choices made on validation only, which must not have
    read a price of any test block.
    """
    if model_config.scaling in config.scalings:
        raise ConfigError(f"the models' own scaling {model_config.scaling!r} cannot be an other scaling too")
    if search is not None and np.datetime64(search.test_start) > search_span(prices, config)[1]:
        raise ConfigError(
            f"the search read prices up to {search.test_start}, past the first test block's start "
            f"{_day(search_span(prices, config)[1])}: its choices would have seen what the backtest scores"
        )
    if config.closes_only and not model_config.ranges_optional:
        raise ConfigError("closes-only scoring removes ranges: it needs models of variance_source range_or_returns")
    started = time.perf_counter()
    if config.epoch_steps is not None:
        train_config = replace(train_config, epoch_steps=config.epoch_steps)
    levels = list(model_config.quantiles)
    folds = make_folds(prices, config)
    trials = [
        t
        for f in folds
        for t in fold_trials(f, model_config, train_config, config.seeds, config.scalings, search, config.closes_only)
    ]
    results = run_trials(prices, features, trials, jobs, ray_address)
    everything: dict[str, dict[int, list[SpanForecasts]]] = {}  # method -> seed -> spans of every fold
    trainings: dict[str, list[dict[str, Any]]] = {}
    described = []
    for fold in folds:
        forecasts, trained = _collect(results, fold.index)
        data = fold_data(prices, features, model_config.horizon, fold.validation_start, fold.test_start, fold.test_end)
        known = prices if fold.test_end is None else prices[prices["date"] < fold.test_end]
        for name, spans in baseline_spans(data, np.asarray(levels), series_ranges(known, data.series)).items():
            forecasts[name] = {0: spans}
        for method, done in trained.items():
            trainings.setdefault(method, []).extend(done)
        fold_scores = {m: scores(list(by_seed.values()), levels) for m, by_seed in forecasts.items()}
        described.append({**fold.to_dict(), "scores": fold_scores})
        for method, by_seed in forecasts.items():
            # seed s of each fold is pooled with seed s of the others
            for seed, spans in by_seed.items():
                everything.setdefault(method, {}).setdefault(seed, []).extend(spans)
    runs = {m: [by_seed[s] for s in sorted(by_seed)] for m, by_seed in everything.items()}
    horizons = sorted({1, model_config.horizon})
    banded = {m: r for m, r in runs.items() if r[0][0].quantiles is not None}
    if "har_range" not in runs:
        logger.info("HAR-range left out: some prices have no high and low (closes only)")
    tested = [
        (loss, a, b)
        for loss, a, b in pairs(
            config.scalings, train_config.pretrain_paths > 0, config.closes_only, bool(model_config.variance_scales)
        )
        if "har_range" in runs or "har_range" not in (a, b)
    ]
    tests, sets = judge(runs, {m: levels for m in runs}, horizons, tested, label)
    first, last = prices["date"].min(), prices["date"].max()
    return Backtest(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        config={
            "backtest": {**asdict(config), "seeds": list(config.seeds), "scalings": list(config.scalings)},
            "model": model_config.to_dict(),
            "train": train_config.to_dict(),
            "features": list(features),
            "jobs": jobs,
            "ray_address": ray_address,
            "data": {
                "source": source,
                "tickers": sorted(prices["ticker"].unique().tolist()),
                "first": first.date().isoformat(),
                "last": last.date().isoformat(),
            },
        },
        folds=described,
        pooled={m: scores(r, levels) for m, r in runs.items()},
        tests=tests,
        confidence_sets=sets,
        coverage_tests={m: band_tests(r, levels) for m, r in banded.items()},
        trainings=trainings,
        failures=failures(results),
        search=None if search is None else search.to_json(),
        forecasts=len(pooled(runs["random_walk"][0])),
        seconds=round(time.perf_counter() - started, 1),
    )


def _day(day: np.datetime64) -> str:
    return str(np.datetime_as_string(day, unit="D"))
