"""Pretraining on synthetic paths before a forecaster trains on real prices.

With ``TrainConfig.pretrain_paths`` N > 0, ``pretrain`` draws N paths of
``pretrain_days`` days from the processes of ``training.synthetic`` (seeded
by the training's seed: nothing is stored), with the same features and
horizon as the real data and scaled by the real data's own scaler (the
model then reads synthetic and real rows in the same units), and trains the
model on them for exactly ``pretrain_steps`` optimiser steps, without
validation or early stopping: the synthetic paths say nothing of the real
validation span. ``fit`` then trains it on the real prices as without
pretraining, with a fresh optimiser and the same budget: the two phases'
steps are reported apart, so that a comparison can count them.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from data.features import through_end
from models.forecaster import Forecaster
from training.batches import batches_for
from training.config import TrainConfig
from training.dataset import TrainingData
from training.distributed import World
from training.loop import TrainResult, train
from training.synthetic import synthetic_series

logger = logging.getLogger(__name__)


def synthetic_data(real: TrainingData, config: TrainConfig) -> TrainingData:
    """``config.pretrain_paths`` synthetic paths with ``real``'s features and horizon, scaled by its scaler,
    every row a training row."""
    series = synthetic_series(config.pretrain_paths, config.pretrain_days, real.features, real.horizon, config.seed)
    return TrainingData(series, through_end(series), real.scaler, real.horizon)


def pretrain(model: Forecaster, real: TrainingData, config: TrainConfig, world: World | None = None) -> TrainResult:
    """Train ``model`` in place on synthetic paths for ``config.pretrain_steps`` optimiser steps."""
    data = synthetic_data(real, config)
    phase = replace(config, epochs=1, epoch_steps=config.pretrain_steps, pretrain_paths=0)
    source = batches_for(model.config, data, phase, (world or World()).shard)
    result = train(model, source, phase, desc=f"pretrain {model.config.mode}", validate=False, world=world)
    logger.info(
        "pretrained %s on %d synthetic paths of %d days: %d steps, %.1fs",
        model.config.mode,
        config.pretrain_paths,
        config.pretrain_days,
        result.steps,
        result.seconds,
    )
    return result
