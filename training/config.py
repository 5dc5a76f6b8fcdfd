"""``TrainConfig``: how a forecaster is trained (never what it is: that is ``ModelConfig``)."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from latentcast.errors import ConfigError

# long enough to see a core that a training keeps busy as busy, short beside the training it sizes
BUSY_SAMPLE_SECONDS = 0.5
PROC_STAT = Path("/proc/stat")


def cores_allowed() -> int:
    """The cores this process may run on: its CPU affinity where the platform tells it, else every core."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def busy_cores(seconds: float = BUSY_SAMPLE_SECONDS) -> float:
    """How many cores the machine keeps busy now: from /proc/stat over ``seconds``, else the 1-minute load."""
    try:
        before = _cpu_times()
        time.sleep(seconds)
        after = _cpu_times()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    total = sum(after) - sum(before)
    idle = (after[3] + after[4]) - (before[3] + before[4])  # idle and iowait
    cores = (os.cpu_count() or 1) * (1 - idle / total) if total > 0 else 0.0
    return max(0.0, cores)


def free_cores(processes: int = 1, seconds: float = BUSY_SAMPLE_SECONDS) -> int:
    """Torch threads for each of ``processes`` training processes starting now: the cores this process may run on
    that the machine does not keep busy, shared out; at least 1."""
    return max(1, round(cores_allowed() - busy_cores(seconds)) // max(1, processes))


def _cpu_times() -> list[int]:
    """The machine's CPU times (user, nice, system, idle, iowait, ...) in jiffies, from /proc/stat's first line."""
    first = PROC_STAT.read_text().split("\n", 1)[0].split()
    if first[0] != "cpu":
        raise ValueError(f"{PROC_STAT} does not start with the cpu line")
    return [int(v) for v in first[1:]]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by both modes.

    Latent mode cuts the training rows into at least ``streams`` contiguous
    streams (a ticker's rows in pieces of at most ``rows / streams`` steps)
    read in parallel, ``bptt`` steps at a time. The first ``burn_in`` rows of
    each ticker (at least an ar window) carry no loss in either mode, as too
    little history lies behind them. Ar mode reads a window ending at every
    scored row each epoch in random order, in batches of ``batch_size``, or
    only ``windows_per_epoch`` of them when that is set. ``threads`` None:
    as many torch threads as ``free_cores`` finds when training starts, so
    that a training beside another does not oversubscribe the busy cores.

    With ``epoch_steps`` set, an epoch is that many optimiser steps in either
    mode, whatever the data: the batches run on across the source's own
    passes over the data, and validation (early stopping) comes every
    ``epoch_steps`` steps. Both modes then have the same budget of
    ``epochs * epoch_steps`` steps (the backtest's equal budgets). Unset, an
    epoch is one pass, which takes many more steps in ar mode (one per
    ``batch_size`` windows) than in latent mode (one per ``bptt`` chunk).

    With ``pretrain_paths`` N > 0 the model first trains for
    ``pretrain_steps`` optimiser steps on N synthetic paths of
    ``pretrain_days`` days (``training.pretrain``), then as above.
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
    threads: int | None = None
    progress: bool = True
    pretrain_paths: int = 0
    pretrain_steps: int = 400
    pretrain_days: int = 1000

    def __post_init__(self) -> None:
        names: tuple[str, ...] = ("epochs", "streams", "bptt", "batch_size", "windows_per_epoch", "epoch_steps")
        names += ("patience", "threads", "pretrain_steps", "pretrain_days")
        for name in names:
            value = getattr(self, name)
            if name in ("windows_per_epoch", "threads", "epoch_steps") and value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.burn_in < 0:
            raise ConfigError(f"burn_in must not be negative, got {self.burn_in!r}")
        if not isinstance(self.pretrain_paths, int) or isinstance(self.pretrain_paths, bool) or self.pretrain_paths < 0:
            raise ConfigError(f"pretrain_paths must be a non-negative integer, got {self.pretrain_paths!r}")
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
