"""``TrainConfig``: how a forecaster is trained (never what it is: that is ``ModelConfig``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from data.errors import ConfigError


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by both modes.

    Latent mode cuts the training span into about ``streams`` contiguous
    streams (of ``rows / streams`` steps each) read in parallel, ``bptt`` steps
    at a time; ``burn_in`` steps at the start of each stream carry no loss, as
    their state has not seen enough history yet. Ar mode draws
    ``windows_per_epoch`` random windows in batches of ``batch_size``.
    """

    epochs: int = 40
    streams: int = 16
    bptt: int = 50
    batch_size: int = 64
    burn_in: int = 20
    windows_per_epoch: int = 4096
    lr: float = 3e-3
    weight_decay: float = 1e-5
    clip_norm: float = 1.0
    patience: int = 6
    min_delta: float = 1e-4
    seed: int = 0
    threads: int = 2
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "streams", "bptt", "batch_size", "windows_per_epoch", "patience", "threads"):
            value = getattr(self, name)
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
