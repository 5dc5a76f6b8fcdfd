"""A backtest's trainings as independent trials: what one is, and how one runs.

A backtest is folds x methods x seeds trainings that share nothing but their
inputs: each ``Trial`` prepares its fold's data, trains one model and rolls
it over the fold's test block (``run_trial``). ``training.fanout`` runs many,
here or on other processes; a trial that fails comes back with its error, and
the others go on: the report names the failure and pools what succeeded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from data.features import Split, without_ranges
from models.config import ModelConfig
from training.config import TrainConfig
from training.dataset import TrainingData
from training.evaluate import SpanForecasts, model_forecasts
from training.pipeline import fit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trial:
    """One training: ``model_config`` with ``seed``, learning before ``test_start``, forecasting to ``test_end``."""

    fold: int  # -1: a search trial, of no fold
    method: str
    seed: int
    validation_start: np.datetime64
    test_start: np.datetime64
    test_end: np.datetime64 | None  # exclusive; None: to the end of the data
    model_config: ModelConfig
    train_config: TrainConfig
    forecast: bool = True  # False: train and validate only (a search trial)
    features: tuple[str, ...] | None = None  # the features it reads; None: the backtest's
    unranged: bool = False  # forecast also with every range not sent (NaN): what a closes-only session gets

    def describe(self) -> str:
        where = "search" if self.fold < 0 else f"fold {self.fold}"
        return f"{where}, {self.method}, seed {self.seed}"


@dataclass(frozen=True)
class TrialResult:
    """A trial's forecasts (per ticker) and how its training went; or, when it failed, why."""

    trial: Trial
    spans: list[SpanForecasts] | None
    training: dict[str, float | int] | None  # steps, epochs run, best epoch, best validation loss, seconds
    error: str | None = None
    unranged_spans: list[SpanForecasts] | None = None  # with ``Trial.unranged``: the forecasts without ranges


def fold_data(
    prices: pd.DataFrame,
    features: Sequence[str],
    horizon: int,
    validation_start: np.datetime64,
    test_start: np.datetime64,
    test_end: np.datetime64 | None,
) -> TrainingData:
    """The data a fold learns from: prices before its block's end, split at its validation and test starts."""
    known = prices if test_end is None else prices[prices["date"] < test_end]
    split = Split(validation_start, test_start)
    return TrainingData.prepare(known, features, horizon, split=lambda _: split)


def run_trial(prices: pd.DataFrame, features: Sequence[str], trial: Trial) -> TrialResult:
    """Train ``trial`` and forecast its test block; an exception becomes the result's ``error``."""
    try:
        data = fold_data(
            prices,
            trial.features or features,
            trial.model_config.horizon,
            trial.validation_start,
            trial.test_start,
            trial.test_end,
        )
        config = replace(trial.train_config, seed=trial.seed)
        trained = fit(trial.model_config, data, config)
        starts = [data.split.bounds(s)[1] for s in data.series]
        spans = model_forecasts(trained.model, data.scaler, data.series, starts) if trial.forecast else []
        unranged = None
        if trial.unranged:  # the whole history without ranges, as a session that sends closes only reads it
            closes = [without_ranges(s) for s in data.series]
            unranged = model_forecasts(trained.model, data.scaler, closes, starts)
    except Exception as exc:  # reported in the backtest, never fatal to the other trials
        logger.warning("%s failed: %s: %s", trial.describe(), type(exc).__name__, exc)
        return TrialResult(trial, None, None, f"{type(exc).__name__}: {exc}")
    result = trained.result
    training: dict[str, float | int] = {
        "steps": result.steps,
        "pretrain_steps": 0 if trained.pretrained is None else trained.pretrained.steps,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "val_loss": result.best_val_loss,
        "seconds": round(result.seconds, 2),
    }
    return TrialResult(trial, spans, training, unranged_spans=unranged)


def logged(result: TrialResult, done: int, count: int) -> TrialResult:
    """``result``, its progress logged here (a spawned process's or a Ray task's own log goes nowhere)."""
    training = result.training or {}
    outcome = result.error or f"{training.get('steps')} steps, {training.get('seconds')} s"
    logger.info("trial %d of %d, %s: %s", done, count, result.trial.describe(), outcome)
    return result


def failures(results: Sequence[TrialResult]) -> list[dict[str, Any]]:
    """The failed trials, as the report lists them."""
    return [
        {"fold": r.trial.fold, "method": r.trial.method, "seed": r.trial.seed, "error": r.error}
        for r in results
        if r.error is not None
    ]
