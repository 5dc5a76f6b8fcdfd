"""The training loop: a quantile forecaster, a batch source, a ``TrainConfig``.

It does not know which mode it trains. Each ``Batch`` says whether to start
from a zero state; otherwise the state of the previous batch is carried in,
detached (word_language_model's ``repackage_hidden``), so gradients stop at
every chunk boundary while the values flow on along the stream.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from latentcast.errors import ConfigError
from models import fused_gru
from models.forecaster import Forecaster
from models.state import StreamState
from training.batches import Batch, BatchSource
from training.config import TrainConfig, free_cores
from training.distributed import World

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What happened during training; the model holds the best weights."""

    best_epoch: int
    best_val_loss: float
    epochs_run: int
    steps: int  # optimiser steps
    rows: int  # training rows that carried a loss, summed over epochs
    train_rows: int  # distinct training rows that carry a loss in one epoch
    validation_rows: int  # validation rows scored after each epoch
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def loss_sum(out: Tensor, target: Tensor, levels: Tensor, scale: Tensor | None = None) -> tuple[Tensor, int]:
    """Summed pinball loss over finite targets and their count.

    out: (B, S, H, Q); target: (B, S, H) with NaN where no loss is due; scale:
    (B, S) or None, each step's volatility, by which its errors are divided (a
    volatility-scaled model is trained on standardised targets).
    """
    mask = torch.isfinite(target)
    diff = torch.nan_to_num(target).unsqueeze(-1) - out  # (B, T, H, Q)
    if scale is not None:
        diff = diff / scale[:, :, None, None]
    loss = torch.maximum(levels * diff, (levels - 1) * diff).mean(dim=-1)  # (B, T, H)
    return (loss * mask).sum(), int(mask.sum())


def evaluate_loss(model: Forecaster, batches: Iterable[Batch], world: World | None = None) -> float:
    """Mean pinball loss over every finite target of ``batches`` (no gradients).

    With a ``world`` of several processes, each passes its shard of the
    batches and all return the mean over every process's targets.
    """
    device = next(model.parameters()).device
    levels = torch.tensor(model.config.quantiles, device=device)
    total, count = 0.0, 0.0
    was_training = model.training
    model.eval()
    with torch.no_grad(), fused_gru.evaluation():
        for batch in batches:
            x, last = batch.x.to(device), batch.y.shape[1]
            out, _, scale = model(x, last=last, with_volatility=True)
            batch_sum, batch_count = loss_sum(out, batch.y.to(device), levels, scale)
            total, count = total + float(batch_sum), count + batch_count
    model.train(was_training)
    if world is not None:
        total, count = world.sum([total, count])
    return total / count if count else math.nan


def train(
    model: Forecaster,
    source: BatchSource,
    config: TrainConfig,
    desc: str = "train",
    validate: bool = True,
    world: World | None = None,
) -> TrainResult:
    """Fit ``model`` in place with Adam, clipping and early stopping; restore the best weights.

    Without ``validate`` (a refit through the newest price: nothing is left to
    validate on) it runs exactly ``config.epochs`` epochs and keeps the last
    weights; ``best_val_loss`` is then NaN.

    With a ``world`` of several processes, ``source`` yields this process's
    shard of each batch: every step scales the local loss sum by the count of
    the whole batch (``Batch.targets``), so the averaged gradients are those
    of the whole batch, and the gradients' all-reduce is the step's only
    exchange between processes.
    """
    world = world or World()
    threads = config.threads or free_cores(world.size if world.device.type == "cpu" else 1)
    torch.set_num_threads(threads)
    logger.info("%s: %d torch threads%s", desc, threads, "" if config.threads else " (the cores free now)")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)  # the same on every process: they draw the same batches
    net = world.wrap(model)
    levels = torch.tensor(model.config.quantiles, device=world.device)
    # fused: one kernel over every parameter per step, not a dozen small ops per tensor (the same Adam)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    best_loss, best_epoch, best_weights = math.inf, 0, copy.deepcopy(model.state_dict())
    history: list[dict[str, float]] = []
    steps = rows = waited = 0
    started = time.perf_counter()
    # with a step budget, one endless run of batches over the source's passes, cut every ``epoch_steps`` steps
    endless = None if config.epoch_steps is None else _endless(source, rng)
    bar = tqdm(range(1, config.epochs + 1), desc=desc, unit="epoch", disable=not config.progress, leave=False)
    state: StreamState | None = None  # each pass's first batch resets it; an epoch of steps may start mid-pass
    for epoch in bar:
        model.train()
        epoch_sum, epoch_count, taken = 0.0, 0.0, 0
        for batch in source.epoch(rng) if endless is None else endless:
            x, y = batch.x.to(world.device), batch.y.to(world.device)
            state = None if batch.reset or state is None else state.detach()
            out, state, scale = net(x, state, y.shape[1], with_volatility=True)
            batch_sum, local_count = loss_sum(out, y, levels, scale)
            if batch.targets == 0:
                continue
            # DDP averages gradients over processes: times ``size`` makes them those of the global mean
            loss = batch_sum * world.size / batch.targets
            if not torch.isfinite(loss):
                raise ConfigError(f"training diverged: loss is {loss.item()} at epoch {epoch}; lower the lr")
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm, foreach=True)
            optimiser.step()
            steps, rows = steps + 1, rows + int(torch.isfinite(y).any(dim=-1).sum())
            epoch_sum, epoch_count = epoch_sum + float(batch_sum.detach()), epoch_count + local_count
            taken += 1
            if taken == config.epoch_steps:
                break
        epoch_sum, epoch_count = world.sum([epoch_sum, epoch_count])
        train_loss = epoch_sum / max(epoch_count, 1)
        if not validate:
            history.append({"epoch": epoch, "train_loss": train_loss})
            best_epoch, best_weights = epoch, model.state_dict()
            continue
        val_loss = evaluate_loss(model, source.validation(), world)
        if not math.isfinite(val_loss):
            raise ConfigError(f"validation loss is {val_loss} at epoch {epoch}: no validation rows, or diverged")
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}", best=f"{min(best_loss, val_loss):.4f}")
        if val_loss < best_loss - config.min_delta:
            best_loss, best_epoch, waited = val_loss, epoch, 0
            best_weights = copy.deepcopy(model.state_dict())
        else:
            waited += 1
            if waited >= config.patience:
                logger.info("%s: early stop at epoch %d, best epoch %d", desc, epoch, best_epoch)
                break
    model.load_state_dict(best_weights)
    model.eval()
    rows = int(world.sum([rows])[0])
    seconds = time.perf_counter() - started
    best_loss = best_loss if validate else math.nan
    return TrainResult(
        best_epoch, best_loss, len(history), steps, rows, source.train_rows, source.validation_rows, seconds, history
    )


def _endless(source: BatchSource, rng: np.random.Generator) -> Iterator[Batch]:
    """The batches of one pass of ``source`` after another, without end (each pass starts from a zero state)."""
    while True:
        yield from source.epoch(rng)
