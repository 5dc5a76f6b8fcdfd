"""Checkpoints: plain dicts of tensors and builtins, never a pickled module.

    {"format": 1, "config": {...}, "state_dict": {...}, "scaler": {...},
     "metrics": {...}, "data_span": {...}, "offsets": [[...] per horizon]}

``offsets`` are the split-conformal offsets (``models/calibration.py``), one
per horizon and quantile; a checkpoint saved before they existed loads with
zero offsets. A latent checkpoint may also hold ``young_offsets``, those of
streams that have read few returns (``YoungOffsets``).

They load with ``torch.load(path, weights_only=True)``; the model is rebuilt
from the config and the weights are checked against it.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np
import torch

from data.features import Scaler
from data.files import replaced_whole
from latentcast.errors import CheckpointError, ConfigError, StateError
from models.calibration import YoungOffsets
from models.config import ModelConfig
from models.forecaster import Forecaster

CHECKPOINT_FORMAT = 1


def make_checkpoint(
    model: Forecaster,
    scaler: Scaler,
    metrics: dict[str, Any] | None = None,
    data_span: dict[str, Any] | None = None,
    offsets: np.ndarray | None = None,
    young: YoungOffsets | None = None,
) -> dict[str, Any]:
    """The plain dict that ``save_checkpoint`` writes; ``offsets`` (H, Q), zeros if None; ``young``, if any."""
    c = model.config
    offsets = np.zeros((c.horizon, len(c.quantiles))) if offsets is None else offsets
    assert offsets.shape == (c.horizon, len(c.quantiles)), offsets.shape
    return {
        "format": CHECKPOINT_FORMAT,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "scaler": scaler.to_dict(),
        "metrics": metrics or {},
        "data_span": data_span or {},
        "offsets": [[float(v) for v in row] for row in offsets],
    } | ({} if young is None else {"young_offsets": young.to_dict()})


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``checkpoint`` to ``path`` atomically (temp file, fsync, rename)."""
    with replaced_whole(path) as handle:
        torch.save(checkpoint, handle)


def load_checkpoint(path: str | os.PathLike[str], origin: str | None = None) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; ``CheckpointError`` if unreadable.

    Errors name ``origin`` (default: the path), so that a service can name a version
    instead of a path on its disk.
    """
    name = origin or str(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{name}: no such checkpoint") from exc
    except pickle.UnpicklingError as exc:
        # torch's message runs to a page of advice on loading the file anyway: not for a server's clients
        detail = "it holds objects other than tensors and plain values, which weights-only loading refuses"
        raise CheckpointError(f"{name}: unreadable checkpoint (UnpicklingError: {detail})") from exc
    except Exception as exc:  # torch raises many types for a truncated or tampered file
        detail = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(f"{name}: unreadable checkpoint ({type(exc).__name__}: {detail})") from exc
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{name}: not a checkpoint of format {CHECKPOINT_FORMAT}")
    return checkpoint


def build_from_checkpoint(checkpoint: dict[str, Any], origin: str = "checkpoint") -> tuple[Forecaster, Scaler]:
    """Rebuild the model (in eval mode) and its scaler; ``CheckpointError`` if they do not fit."""
    try:
        config = ModelConfig.from_dict(checkpoint["config"])
        scaler = Scaler.from_dict(checkpoint["scaler"])
    except (KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{origin}: bad config or scaler ({exc})") from exc
    if len(scaler.features) != config.n_features:
        raise CheckpointError(f"{origin}: scaler has {len(scaler.features)} features, model config {config.n_features}")
    model = Forecaster(config)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{origin}: weights do not fit the config ({exc})") from exc
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise CheckpointError(f"{origin}: weights contain NaN or infinity")
    return model.eval(), scaler


def checkpoint_offsets(checkpoint: dict[str, Any], config: ModelConfig, origin: str = "checkpoint") -> np.ndarray:
    """(H, Q) the checkpoint's conformal offsets; zeros if it has none; ``CheckpointError`` if malformed."""
    shape = (config.horizon, len(config.quantiles))
    raw = checkpoint.get("offsets")
    if raw is None:
        return np.zeros(shape)
    try:
        offsets = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{origin}: malformed conformal offsets ({exc})") from exc
    if offsets.shape != shape or not np.isfinite(offsets).all():
        raise CheckpointError(f"{origin}: conformal offsets must be {shape[0]} x {shape[1]} finite numbers")
    return offsets


def checkpoint_young_offsets(
    checkpoint: dict[str, Any], config: ModelConfig, origin: str = "checkpoint"
) -> YoungOffsets | None:
    """The checkpoint's offsets of young streams, None if it has none; ``CheckpointError`` if malformed."""
    raw = checkpoint.get("young_offsets")
    if raw is None:
        return None
    shape = (config.horizon, len(config.quantiles))
    try:
        offsets = np.asarray(raw["offsets"], dtype=np.float64)
        young = YoungOffsets(tuple(int(e) for e in raw["returns_seen"]), offsets)
    except (KeyError, TypeError, ValueError, StateError) as exc:
        raise CheckpointError(f"{origin}: malformed young offsets ({exc})") from exc
    if offsets.ndim != 3 or offsets.shape[1:] != shape or not np.isfinite(offsets).all():
        raise CheckpointError(f"{origin}: young offsets must be {shape[0]} x {shape[1]} finite numbers per bucket")
    return young
