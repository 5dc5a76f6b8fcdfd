"""A policy replay's trainings, run before its decisions and fanned out over processes.

The replay's decisions are sequential (each retrain scores its challenger
against the champion the last one left), but its trainings are not: a retrain
day's challenger copies the architecture of a champion that itself copied the
configured one, so it depends only on the prices known that day; likewise its
refit through that day's price. ``train_days`` trains every day's challenger
and refit at once on ``jobs`` processes (``spawn``ed, as ``training.trials``
runs a backtest's trials), and the replay then runs each day's real retrain
job with its challenger ready (``run_retrain(..., ready=...)``), deciding by
the same code and rule as a job that trains its own.
"""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context

from latentcast.errors import ConfigError
from models.config import ModelConfig
from training.config import TrainConfig, free_cores
from training.pipeline import Trained, fit
from training.retrain import RetrainConfig, challenger_data, fetch, refit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DayTrainings:
    """A retrain day's challenger, trained as its job would train it, and its refit through the day's price."""

    challenger: Trained
    refit: Trained


def train_day(config: RetrainConfig, mode: str) -> DayTrainings:
    """The challenger of ``mode`` a first retrain on ``config``'s prices would train (the configured
    architecture and features, as every later challenger copies them), and its refit through the newest price."""
    prices = fetch(config).frame
    model_config = ModelConfig.from_dict({**config.model.to_dict(), "mode": mode})
    data = challenger_data(prices, config.features, model_config.horizon, config, cache=None)
    challenger = fit(model_config, data, config.train)
    return DayTrainings(challenger, refit(challenger, prices))


def train_days(configs: list[RetrainConfig], mode: str, jobs: int) -> list[DayTrainings]:
    """Each config's (a retrain day's) trainings, in order, on ``jobs`` processes (1: in this one).

    Unset torch threads are shared out among the processes now, so that
    ``jobs`` trainings at once do not each take every core.
    """
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1, got {jobs}")
    threads = configs[0].train.threads if configs else None
    train: TrainConfig | None = None
    if threads is None and configs:
        train = replace(configs[0].train, threads=free_cores(min(jobs, len(configs))))
    configs = [replace(c, train=train) if train is not None else c for c in configs]
    if jobs == 1 or len(configs) <= 1:
        return [train_day(c, mode) for c in configs]
    with ProcessPoolExecutor(max_workers=min(jobs, len(configs)), mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(train_day, c, mode) for c in configs]
        done = []
        for number, future in enumerate(futures, 1):
            done.append(future.result())
            logger.info("trainings of retrain day %d of %d done", number, len(futures))
        return done
