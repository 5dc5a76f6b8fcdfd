"""Walk-forward backtest: expanding-window folds, each trained anew, tested for significance.

The newest ``folds * test_days`` trading days are cut into ``folds``
consecutive test blocks. Fold k learns from every day before its block (the
last ``validation_days`` of them validate, for early stopping), trains ar
and latent once per seed and fits the baselines on its training span, then
forecasts its block as ``compare`` does (one forecast per day after its
close, no refitting inside the block). No fold reads a price of its own test
block before forecasting it.

Scores per fold and pooled over folds: pinball loss, MAE ratio to the random
walk and the coverage of each method's outer band, per seed for the models.
A Diebold-Mariano test (``training.significance.compare_losses``) compares
latent with ar, GARCH(1,1)-t and the random walk on the per-origin pinball
loss, averaged over the seeds and over the tickers of each day (one series
over dates).

With ``BacktestConfig.scalings``, each fold also trains ar and latent with
those other scalings (methods ``latent_global``, ``ar_global``, ...), on the
same data and seeds, and each is tested against the model of the same mode
with the configuration's own scaling: the test that picks the default.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from data.errors import ConfigError, DataError
from data.features import Split
from models.config import MODES, SCALINGS, ModelConfig
from training.compare import baseline_spans
from training.config import TrainConfig
from training.dataset import TrainingData
from training.evaluate import SpanForecasts, model_forecasts
from training.pipeline import fit
from training.report import LABELS
from training.scoring import pooled, score
from training.significance import SIGNIFICANCE, compare_losses

logger = logging.getLogger(__name__)

OPPONENTS = ("ar", "garch_t", "random_walk")  # latent is tested against each


@dataclass(frozen=True)
class BacktestConfig:
    """How many folds, how long, and how many training runs per fold."""

    folds: int = 3
    test_days: int = 126  # trading days of each test block (about six months)
    validation_days: int = 126
    seeds: tuple[int, ...] = (0, 1, 2)
    scalings: tuple[str, ...] = ()  # other scalings trained beside the model's own, each tested against it

    def __post_init__(self) -> None:
        for name in ("folds", "test_days", "validation_days"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.seeds:
            raise ConfigError("the backtest needs at least one seed")
        unknown = [s for s in self.scalings if s not in SCALINGS]
        if unknown:
            raise ConfigError(f"unknown scaling {unknown[0]!r}; valid scalings: {', '.join(SCALINGS)}")


def scaled(mode: str, scaling: str) -> str:
    """The method name of ``mode`` trained with the other scaling ``scaling``: ``latent_global``."""
    return f"{mode}_{scaling}"


def label(method: str) -> str:
    """How reports name a method: ``LABELS``'s, or ``latent, global scaling`` for a scaled model."""
    if method in LABELS:
        return LABELS[method]
    mode, _, scaling = method.partition("_")
    return f"{mode}, {scaling} scaling"


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
    tests: list[dict[str, Any]]  # Diebold-Mariano results with their verdicts
    forecasts: int  # origins per method, all folds

    def to_json(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "config": self.config,
            "folds": self.folds,
            "pooled": self.pooled,
            "diebold_mariano": self.tests,
            "forecasts": self.forecasts,
            "significance_level": SIGNIFICANCE,
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


def fold_forecasts(
    prices: pd.DataFrame,
    fold: Fold,
    features: Sequence[str],
    model_config: ModelConfig,
    train_config: TrainConfig,
    seeds: Sequence[int],
    scalings: Sequence[str] = (),
) -> dict[str, list[list[SpanForecasts]]]:
    """Method -> one list of per-ticker test-block forecasts per training run (one for a baseline).

    ``scalings``: other scalings, each trained for both modes as ``scaled(mode, scaling)``.
    """
    known = prices if fold.test_end is None else prices[prices["date"] < fold.test_end]
    split = Split(fold.validation_start, fold.test_start)
    data = TrainingData.prepare(known, features, model_config.horizon, split=lambda _: split)
    starts = [data.split.bounds(s)[1] for s in data.series]
    out: dict[str, list[list[SpanForecasts]]] = {}
    variants = [(m, model_config.scaling, m) for m in MODES] + [(m, s, scaled(m, s)) for s in scalings for m in MODES]
    for mode, scaling, method in variants:
        config = ModelConfig.from_dict({**model_config.to_dict(), "mode": mode, "scaling": scaling})
        out[method] = []
        for seed in seeds:
            trained = fit(config, data, replace(train_config, seed=seed))
            out[method].append(model_forecasts(trained.model, data.scaler, data.series, starts))
            logger.info("fold %d, %s, seed %d: trained in %.1fs", fold.index, method, seed, trained.result.seconds)
    for name, spans in baseline_spans(data, np.asarray(model_config.quantiles)).items():
        out[name] = [spans]
    return out


def scores(runs: list[list[SpanForecasts]], levels: Sequence[float]) -> dict[str, dict[str, list[float | None]]]:
    """Horizon -> metric -> one value per run (pinball, MAE ratio, coverage, forecasts)."""
    per_run = [score(pooled(run), levels) for run in runs]
    return {
        horizon: {
            metric: [r[horizon][metric] for r in per_run] for metric in ("pinball", "mae_ratio", "coverage", "count")
        }
        for horizon in per_run[0]
    }


def pairs(scalings: Sequence[str]) -> list[tuple[str, str]]:
    """The methods tested: latent against each opponent, each mode against itself with each other scaling."""
    return [("latent", other) for other in OPPONENTS] + [(m, scaled(m, s)) for s in scalings for m in MODES]


def significance(
    forecasts: dict[str, list[list[SpanForecasts]]],
    levels: Sequence[float],
    horizons: Sequence[int],
    scalings: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Diebold-Mariano tests of each pair of ``pairs(scalings)``, at each horizon, over the days both forecast."""
    out = []
    for horizon in horizons:
        for a, b in pairs(scalings):
            result = compare_losses(forecasts[a], forecasts[b], levels, horizon)
            out.append(
                {"horizon": horizon, "a": a, "b": b, **result.to_dict(), "verdict": result.verdict(label(a), label(b))}
            )
    return out


def run_backtest(
    prices: pd.DataFrame,
    features: Sequence[str],
    model_config: ModelConfig,
    train_config: TrainConfig,
    config: BacktestConfig,
    source: str,
) -> Backtest:
    """Train and score every fold, pool them and test latent against ar, GARCH-t and the random walk
    (and each mode against its other scalings)."""
    if model_config.scaling in config.scalings:
        raise ConfigError(f"the models' own scaling {model_config.scaling!r} cannot be an other scaling too")
    levels = list(model_config.quantiles)
    folds = make_folds(prices, config)
    everything: dict[str, list[list[SpanForecasts]]] = {}
    described = []
    for fold in folds:
        forecasts = fold_forecasts(prices, fold, features, model_config, train_config, config.seeds, config.scalings)
        described.append({**fold.to_dict(), "scores": {m: scores(runs, levels) for m, runs in forecasts.items()}})
        for method, runs in forecasts.items():
            # a run's forecasts of every fold, concatenated: seed s of each fold is pooled with seed s of the others
            if method not in everything:
                everything[method] = [list(run) for run in runs]
            else:
                for pooled_run, run in zip(everything[method], runs, strict=True):
                    pooled_run.extend(run)
    horizons = sorted({1, model_config.horizon})
    first, last = prices["date"].min(), prices["date"].max()
    return Backtest(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        config={
            "backtest": {**asdict(config), "seeds": list(config.seeds), "scalings": list(config.scalings)},
            "model": model_config.to_dict(),
            "train": train_config.to_dict(),
            "features": list(features),
            "data": {
                "source": source,
                "tickers": sorted(prices["ticker"].unique().tolist()),
                "first": first.date().isoformat(),
                "last": last.date().isoformat(),
            },
        },
        folds=described,
        pooled={m: scores(runs, levels) for m, runs in everything.items()},
        tests=significance(everything, levels, horizons, config.scalings),
        forecasts=len(pooled(everything["latent"][0])),
    )


def _day(day: np.datetime64) -> str:
    return str(np.datetime_as_string(day, unit="D"))
