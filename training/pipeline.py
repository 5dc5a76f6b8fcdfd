"""From prices to a registered version: prepare, fit, evaluate, checkpoint."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from data.features import DEFAULT_FEATURES
from latentcast.errors import ConfigError, DataError
from models.calibration import YoungOffsets
from models.checkpoint import make_checkpoint
from models.config import RANGE_SOURCES, ModelConfig
from models.forecaster import Forecaster
from models.volatility import range_ratio
from training.batches import batches_for
from training.config import TrainConfig
from training.conformal import fit_offsets, fit_young_offsets
from training.dataset import TrainingData
from training.distributed import World
from training.evaluate import model_forecasts
from training.loop import TrainResult, train
from training.pretrain import pretrain
from training.registry import ModelVersion, Registry
from training.scoring import pooled_metrics

logger = logging.getLogger(__name__)


@dataclass
class Trained:
    """A fitted model with what it was trained on and how it went."""

    model: Forecaster
    data: TrainingData
    result: TrainResult
    train_config: TrainConfig
    pretrained: TrainResult | None = None  # the pretraining on synthetic paths, if any


def fit(
    model_config: ModelConfig,
    data: TrainingData,
    train_config: TrainConfig,
    validate: bool = True,
    world: World | None = None,
) -> Trained:
    """Build ``model_config`` from a fixed seed and train it on ``data`` (``validate``, ``world``: see ``train``).

    The model comes back on the CPU, wherever it was trained: checkpoints and the service are CPU-only.
    """
    world = world or World()
    if model_config.n_features != len(data.features):
        model_config = ModelConfig.from_dict({**model_config.to_dict(), "n_features": len(data.features)})
    if model_config.variance_source in RANGE_SOURCES and data.features[1:2] != ("range",):
        raise ConfigError(
            f"variance_source {model_config.variance_source!r} reads the range as second feature, "
            f"the data has {list(data.features)}"
        )
    check_every_value(data, model_config)
    if model_config.ranges_optional:  # fit where the scaler is: on the training rows
        model_config = replace(model_config, range_ratio=training_range_ratio(data))
    if model_config.horizon != data.horizon:
        raise ValueError(f"model horizon {model_config.horizon} != data horizon {data.horizon}")
    torch.manual_seed(train_config.seed)
    model = Forecaster(model_config)
    pretrained = pretrain(model, data, train_config, world) if train_config.pretrain_paths else None
    source = batches_for(model_config, data, train_config, world.shard)
    result = train(model, source, train_config, desc=f"train {model_config.mode}", validate=validate, world=world)
    model.to("cpu")
    if validate:
        logger.info(
            "trained %s: best val loss %.4f at epoch %d of %d, %d training and %d validation rows scored, %.1fs",
            model_config.mode,
            result.best_val_loss,
            result.best_epoch,
            result.epochs_run,
            result.train_rows,
            result.validation_rows,
            result.seconds,
        )
    else:  # a refit through the newest price: nothing is left to validate on
        logger.info(
            "refit %s through the newest price: %d epochs, %d training rows scored, %.1fs",
            model_config.mode,
            result.epochs_run,
            result.train_rows,
            result.seconds,
        )
    return Trained(model, data, result, train_config, pretrained)


def check_every_value(data: TrainingData, model_config: ModelConfig) -> None:
    """``DataError`` naming the first ticker and day whose features miss a value the model needs: every one,
    but the range of a model that reads it where sent (``ranges_optional``)."""
    optional = 1 if model_config.ranges_optional else None  # the range, second feature
    for series in data.series:
        missing = np.isnan(series.features)
        if optional is not None:
            missing[:, optional] = False
        if missing.any():
            row, column = np.argwhere(missing)[0]
            raise DataError(
                f"{series.ticker}: no {data.features[column]} on {np.datetime_as_string(series.dates[row], 'D')} "
                "(its price lacks a field the feature is made from), and the model needs it on every day"
            )


def training_range_ratio(data: TrainingData) -> float:
    """The training rows' mean squared return over their mean Parkinson variance (``models.volatility``)."""
    rows = np.concatenate([s.features[: data.split.bounds(s)[0], :2] for s in data.series])
    return range_ratio(rows[:, 0], rows[:, 1])


def holdout_metrics(trained: Trained, offsets: np.ndarray | None = None) -> dict[str, Any] | None:
    """Pooled metrics of the model's rolling forecasts over the test span, moved by ``offsets`` if given
    (None when the span is empty: a refit)."""
    data = trained.data
    starts = [data.split.bounds(s)[1] for s in data.series]
    if all(start >= len(s) for start, s in zip(starts, data.series, strict=True)):
        return None
    spans = model_forecasts(trained.model, data.scaler, data.series, starts, offsets)
    return pooled_metrics(spans, trained.model.config.quantiles)


def training_summary(result: TrainResult, train_config: TrainConfig) -> dict[str, Any]:
    """How a training run went, as the registry and the comparison report record it."""
    return {
        "val_loss": result.best_val_loss if math.isfinite(result.best_val_loss) else None,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "train_seconds": round(result.seconds, 2),
        "train_rows": result.train_rows,
        "validation_rows": result.validation_rows,
        "train_config": train_config.to_dict(),
    }


def checkpoint(
    trained: Trained,
    source: str,
    refit_of: str | None = None,
    offsets: np.ndarray | None = None,
    young: YoungOffsets | None = None,
) -> dict[str, Any]:
    """The registry checkpoint: weights, config, scaler, metrics, data span and conformal offsets.

    The offsets (and a latent model's young offsets) are fit on the validation
    span unless given: a refit through the newest price has no validation span
    and takes those of ``refit_of``, the version whose architecture and epoch
    count it repeats (it has no validation loss).
    """
    data = trained.data
    if offsets is None:
        offsets = fit_offsets(trained.model, data.scaler, data.series, data.split)
        if trained.model.config.mode == "latent":
            young = fit_young_offsets(trained.model, data.scaler, data.series, data.split)
    metrics = {**training_summary(trained.result, trained.train_config), "test": holdout_metrics(trained, offsets)}
    if refit_of is not None:
        metrics["refit_of"] = refit_of
    return make_checkpoint(trained.model, data.scaler, metrics, data.span(source), offsets, young)


def train_and_register(
    registry: Registry,
    prices: pd.DataFrame,
    source: str,
    model_config: ModelConfig,
    train_config: TrainConfig,
    features: Sequence[str] = DEFAULT_FEATURES,
    promote: bool = False,
) -> ModelVersion:
    """Train one mode on ``prices`` and register it (promoted when asked or when no champion exists)."""
    data = TrainingData.prepare(prices, features, model_config.horizon)
    version = train_and_register_in(World(), registry, data, source, model_config, train_config, promote)
    assert version is not None  # a single process is the main one
    return version


def train_and_register_in(
    world: World,
    registry: Registry,
    data: TrainingData,
    source: str,
    model_config: ModelConfig,
    train_config: TrainConfig,
    promote: bool = False,
) -> ModelVersion | None:
    """Train one mode on ``data`` as one of the processes of ``world``, each training its shard.

    Only the main process registers (and promotes, as ``train_and_register``); the others return None.
    """
    started = time.perf_counter()
    trained = fit(model_config, data, train_config, world=world)
    if not world.main:
        return None
    version = registry.register(checkpoint(trained, source))
    if promote or registry.champion(model_config.mode) is None:
        registry.promote(version.version)
        logger.info("%s is now the %s champion", version.version, model_config.mode)
    logger.info("registered %s in %.1fs", version.version, time.perf_counter() - started)
    return version
