"""What a soak runs against: the plan, real bars, a registry of small models, and the servers' settings.

``tests/support/soak.py`` runs the soak; this module prepares it: the sessions' bars
(real daily prices of the bundled tickers), two barely trained versions of
each mode, the ``LATENTCAST_*`` settings of the servers and the processes
themselves, and the retrain command a scheduled job would run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from data import sources
from models.config import ModelConfig
from models.series import Observation
from tests.support.processes import ROOT, ServiceProcess
from tests.support.soak_client import FaultRates
from training.config import TrainConfig
from training.pipeline import train_and_register
from training.registry import Registry

TICKERS = ("AAPL", "GOOG", "IBM", "MSFT")
KEYS = tuple(f"soak-client-key-{i}-0123456789" for i in range(4))
ADMIN_KEY = "soak-admin-key-0123456789"
# small models: the soak is about the service, not the forecasts
MODEL = ModelConfig(conv_channels=4, hidden_size=8, horizon=3, window=10, scaling="global")
# barely trained (a tiny learning rate), so that a retrain surely beats them
WEAK = TrainConfig(epochs=1, lr=1e-7, streams=4, bptt=25, windows_per_epoch=128, threads=1, progress=False)
RETRAIN_ARGS = ["--source", "bundled", "--tickers", "IBM", "MSFT", "--epochs", "3", "--hidden", "8"]
RETRAIN_ARGS += ["--window", "10", "--horizon", "3", "--threads", "1", "--no-progress"]


@dataclass(frozen=True)
class SoakPlan:
    """How many sessions, how long each stream is, and how the client misbehaves."""

    sessions: int = 32
    observations: int = 300  # per session, the warm-up history included
    warm: int = 5
    seconds: float = 300.0
    retained: int = 1000  # LATENTCAST_RETAINED_OBSERVATIONS of the servers
    rates: FaultRates = field(default_factory=FaultRates)
    seed: int = 0


def bars(plan: SoakPlan) -> list[list[Observation]]:
    """Real daily bars for each session: tickers in turn, later sessions further into the history."""
    prices = sources.bundled(list(TICKERS))
    out = []
    for i in range(plan.sessions):
        rows = prices[prices["ticker"] == TICKERS[i % len(TICKERS)]].reset_index(drop=True)
        start = (i // len(TICKERS)) * plan.observations % max(1, len(rows) - plan.observations)
        chunk = rows.iloc[start : start + plan.observations]
        out.append(
            [
                Observation(
                    close=float(r["close"]),
                    high=float(r["high"]),
                    low=float(r["low"]),
                    volume=float(r["volume"]),
                    time=r["date"].date().isoformat(),
                )
                for r in chunk.to_dict("records")
            ]
        )
    return out


@contextlib.contextmanager
def services(env: dict[str, str], count: int, folder: Path) -> Iterator[list[str]]:
    """``count`` ``latentcast serve`` processes on free loopback ports; yields their URLs."""
    with contextlib.ExitStack() as stack:
        started = [stack.enter_context(ServiceProcess(env, folder / f"serve-{i}.log")) for i in range(count)]
        yield [server.url for server in started]


def prepare_registry(root: Path) -> Registry:
    """Two barely trained versions of each mode on the bundled prices; the first of each is champion."""
    registry = Registry(root)
    prices = sources.bundled(["IBM", "MSFT"])
    for seed in (0, 1):
        for mode in ("ar", "latent"):
            config = ModelConfig.from_dict({**MODEL.to_dict(), "mode": mode})
            train = TrainConfig.from_dict({**WEAK.to_dict(), "seed": seed})
            train_and_register(registry, prices, "bundled", config, train)
    return registry


def service_env(
    registry: Registry, store: str, redis_url: str | None, plan: SoakPlan, poll: float, cluster: bool = False
) -> dict[str, str]:
    """The servers' settings; ``cluster``: ``redis_url`` names a node of a Redis Cluster."""
    env = {
        "LATENTCAST_ARTIFACTS": str(registry.root),
        "LATENTCAST_REGISTRY_POLL_SECONDS": str(poll),
        "LATENTCAST_LOG_LEVEL": "warning",
        "LATENTCAST_STORE": store,
        "LATENTCAST_API_KEYS": ",".join(KEYS),
        "LATENTCAST_ADMIN_KEY": ADMIN_KEY,
        "LATENTCAST_RETAINED_OBSERVATIONS": str(plan.retained),
    }
    if redis_url:
        env |= {"LATENTCAST_REDIS_URL": redis_url, "LATENTCAST_REDIS_PREFIX": f"soak-{random.getrandbits(32):08x}"}
        env["LATENTCAST_REDIS_CLUSTER"] = str(cluster).lower()
    return env


def run_retrain_command(artifacts: Path) -> dict[str, object]:
    """``latentcast retrain`` against the registry the service polls, as a scheduled job would run it."""
    command = [sys.executable, "-m", "service.cli", "retrain", *RETRAIN_ARGS, "--artifacts", str(artifacts)]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"latentcast retrain failed ({done.returncode}):\n{done.stderr.decode()[-2000:]}")
    job: dict[str, object] = json.loads(done.stdout)
    return job
