"""What every HTTP benchmark serves: an untrained default model in a fresh registry, and plain uvicorn apps.

The processes themselves (``latentcast serve``, readiness, free ports) are
started by ``tests/support/processes.py``, which the tests use too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from data import sources
from data.features import build_series, fit_scaler, split_dates
from models.checkpoint import make_checkpoint
from models.config import ModelConfig
from models.forecaster import Forecaster
from tests.support.processes import Command
from training.registry import Registry

# the model every HTTP benchmark serves: the default-size latent GRU, globally scaled as docs/performance.md's
# figures were measured (untrained: cost does not depend on weights)
BENCH_MODEL = ModelConfig(mode="latent", cell="GRU", scaling="global")


def uvicorn_command(app: str, factory: bool = False) -> Command:
    """Plain uvicorn serving the ASGI ``app`` ("module:attribute"; a function making it if ``factory``)."""

    def command(port: int) -> list[str]:
        listen = ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        return [sys.executable, "-m", "uvicorn", *(["--factory"] if factory else []), app, *listen]

    return command


def bench_env(folder: Path, torch_threads: int) -> dict[str, str]:
    """A registry in ``folder`` whose champion is ``BENCH_MODEL``, and the settings serving it."""
    registry = Registry(folder / "artifacts")
    registry.promote(registry.register(default_checkpoint(BENCH_MODEL)).version)
    return {
        "LATENTCAST_ARTIFACTS": str(registry.root),
        "LATENTCAST_REGISTRY_POLL_SECONDS": "0",
        "LATENTCAST_TORCH_THREADS": str(torch_threads),
        "LATENTCAST_LOG_LEVEL": "warning",
    }


def default_checkpoint(config: ModelConfig) -> dict[str, object]:
    """An untrained model of ``config`` with a scaler fit on the bundled training span."""
    features = ("returns",)
    series = build_series(sources.bundled(), features, config.horizon)
    torch.manual_seed(0)
    return make_checkpoint(Forecaster(config), fit_scaler(series, split_dates(series), features))
