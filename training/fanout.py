"""``run_trials``: many trials run one after another, on processes of this host, or on a Ray cluster.

Trials run in this process (``jobs=1``) or on ``jobs`` processes of this host
(``spawn``ed: a fresh interpreter each, never a fork of one holding torch's
threads), or as tasks on a Ray cluster given its address
(``training.ray_trials``). A process that dies takes its trial with it: that
trial's result carries the error, and the others are still collected.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from multiprocessing import get_context

import pandas as pd

from latentcast.errors import ConfigError
from training.trials import Trial, TrialResult, logged, run_trial

logger = logging.getLogger(__name__)


def default_jobs() -> int:
    """The cores of this host: one trial per core."""
    return os.cpu_count() or 1


def run_trials(
    prices: pd.DataFrame,
    features: Sequence[str],
    trials: Sequence[Trial],
    jobs: int = 1,
    ray_address: str | None = None,
) -> list[TrialResult]:
    """Every trial's result, in the order of ``trials``, run on ``jobs`` processes (1: in this one), or
    on the Ray cluster at ``ray_address`` when given (its CPUs then bound how many run at once).

    A process that dies takes its trial with it: that trial's result carries
    the error, and the others are still collected.
    """
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1, got {jobs}")
    if ray_address is not None:
        from training.ray_trials import run_on_ray  # ray: only when asked for, an optional dependency

        return run_on_ray(prices, features, trials, ray_address)
    results: list[TrialResult | None] = [None] * len(trials)
    if jobs == 1 or len(trials) <= 1:
        for done, trial in enumerate(trials, start=1):
            results[done - 1] = logged(run_trial(prices, features, trial), done, len(trials))
    else:
        with ProcessPoolExecutor(max_workers=min(jobs, len(trials)), mp_context=get_context("spawn")) as pool:
            futures: dict[Future[TrialResult], int] = {
                pool.submit(run_trial, prices, features, t): i for i, t in enumerate(trials)
            }
            for done, future in enumerate(as_completed(futures), start=1):
                i = futures[future]
                results[i] = logged(_result(future, trials[i]), done, len(trials))
    return [r for r in results if r is not None]


def _result(future: Future[TrialResult], trial: Trial) -> TrialResult:
    """The future's result, or a failed result naming why its process gave none."""
    try:
        return future.result()
    except Exception as exc:  # a dead worker (BrokenProcessPool) or an unpicklable result
        logger.warning("%s failed in its process: %s: %s", trial.describe(), type(exc).__name__, exc)
        return TrialResult(trial, None, None, f"{type(exc).__name__}: {exc}")
