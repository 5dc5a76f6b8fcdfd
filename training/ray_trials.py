"""A backtest's trials fanned out over a Ray cluster instead of this host's processes.

``training.fanout.run_trials(..., ray_address=...)`` comes here: every trial becomes a Ray
task running the same ``run_trial`` as a local process does, asking the
cluster for as many CPUs as the trial has torch threads (one when its
threads are left to the host). The prices go to the cluster's object store
once for all of a call's tasks, which read them from there. A trial that
raises comes back with its error exactly as a local one does (``run_trial``
catches it), and a task the cluster loses (its worker died, its node left)
comes back as a failed result naming why; neither stops the others.

Ray is optional (the ``ray`` extra): ``require_ray`` says how to install it.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import pandas as pd

from latentcast.errors import ConfigError
from training.trials import Trial, TrialResult, logged, run_trial

logger = logging.getLogger(__name__)

INSTALL = "pip install -c constraints.txt -e '.[ray]' in the checkout, or make setup"


def require_ray() -> ModuleType:
    """The ``ray`` module, or a ConfigError saying how to install it."""
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise ConfigError(f"--ray-address needs Ray, which is not installed: {INSTALL}") from exc


def trial_cpus(trial: Trial) -> int:
    """The CPUs a trial's task asks the cluster for: its torch threads."""
    return trial.train_config.threads or 1


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """This process connected to the Ray cluster at ``address`` for the block (nothing for None), so that
    every ``run_on_ray`` inside shares one connection; one already open is kept open after it."""
    if address is None:
        yield
        return
    ray = require_ray()
    if ray.is_initialized():
        yield
        return
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address!r}: {type(exc).__name__}: {exc}") from exc
    try:
        yield
    finally:
        ray.shutdown()


def run_on_ray(
    prices: pd.DataFrame, features: Sequence[str], trials: Sequence[Trial], address: str
) -> list[TrialResult]:
    """Every trial's result, in the order of ``trials``, each trained as a task on the Ray cluster at ``address``
    (connecting to it unless a ``ray_session`` already has)."""
    with ray_session(address):
        ray = require_ray()
        task = ray.remote(max_retries=0)(run_trial)
        shared = ray.put(prices)
        refs: dict[Any, int] = {
            task.options(num_cpus=trial_cpus(t)).remote(shared, list(features), t): i for i, t in enumerate(trials)
        }
        results: list[TrialResult | None] = [None] * len(trials)
        waiting = list(refs)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            i = refs[ready[0]]
            results[i] = logged(_result(ray, ready[0], trials[i]), len(trials) - len(waiting), len(trials))
        return [r for r in results if r is not None]


def _result(ray: ModuleType, ref: Any, trial: Trial) -> TrialResult:
    """The result of the task ``ref``, or a failed result naming why the cluster gave none."""
    try:
        result: TrialResult = ray.get(ref)
        return result
    except Exception as exc:  # a dead worker, a lost node or an unpicklable result: reported, never fatal
        logger.warning("%s failed on the Ray cluster: %s: %s", trial.describe(), type(exc).__name__, exc)
        return TrialResult(trial, None, None, f"{type(exc).__name__}: {exc}")
