"""``TrainConfig``: how a forecaster is trained (never what it is: that is ``ModelConfig``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from data.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by both modes.

    Latent mode cuts the training rows into at least ``streams`` contiguous
    streams (a ticker's rows in pieces of at most ``rows / streams`` steps)
    read in parallel, ``bptt`` steps at a time. The first ``burn_in`` rows of
    each ticker (at least an ar window) carry no loss in either mode, as too
    little history lies behind them. Ar mode reads a window ending at every
    scored row each epoch in random order, in batches of ``batch_size``, or
    only ``windows_per_epoch`` of them when that is set.

    With ``epoch_steps`` set, an epoch is that many optimiser steps in either
    mode, whatever the data: the batches run on across the source's own
    passes over the data, and validation (early stopping) comes every
    ``epoch_steps`` steps. Both modes then have the same budget of
    ``epochs * epoch_steps`` steps (the backtest's equal budgets). Unset, an
    epoch is one pass, which takes many more steps in ar mode (one per
    ``batch_size`` windows) than in latent mode (one per ``bptt`` chunk).
    """

    epochs: int = 40
    streams: int = 16
    bptt: int = 50
    batch_size: int = 64
    burn_in: int = 20
    windows_per_epoch: int | None = None
    epoch_steps: int | None = None
    lr: float = 3e-3
    weight_decay: float = 1e-5
    clip_norm: float = 1.0
    patience: int = 6
    min_delta: float = 1e-4
    seed: int = 0
    threads: int = 2
    progress: bool = True

    def __post_init__(self) -> None:
        names = ("epochs", "streams", "bptt", "batch_size", "windows_per_epoch", "epoch_steps", "patience", "threads")
        for name in names:
            value = getattr(self, name)
            if name in ("windows_per_epoch", "epoch_steps") and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.burn_in < 0:
            raise ConfigError(f"burn_in must not be negative, got {self.burn_in!r}")
        for name in ("lr", "clip_norm"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.weight_decay < 0 or self.min_delta < 0:
            raise ConfigError("weight_decay and min_delta must not be negative")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        unknown = sorted(set(raw) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown train config fields: {', '.join(unknown)}")
        return cls(**raw)
