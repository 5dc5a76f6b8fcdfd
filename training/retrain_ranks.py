"""A retrain in several processes: the main one runs the job, the others train beside it.

The main process (rank 0) alone takes the lock, fetches the prices, reads and
writes the registry, scores and decides; it sends the others, through
``distributed.Orders``, the prices, then per mode the challenger to train and
whether to refit it. They train their shard of every batch, register
nothing, and stop when told to (a None order), which the main process sends
once whatever ended its job. So one version is registered per challenger and
refit, and the promotion decision is taken once.
"""

from __future__ import annotations

from dataclasses import replace

from data.feature_cache import artifacts_cache
from training import distributed
from training.distributed import World
from training.jobs import JobReport
from training.pipeline import fit
from training.retrain import RetrainConfig, challenger_data, refit, run_retrain


def follow_retrain(config: RetrainConfig, world: World) -> None:
    """A process of a retrain other than the main one: trains beside it what it sends; registers nothing."""
    cache, train = artifacts_cache(config.artifacts), replace(config.train, progress=False)
    prices = world.agree(None)
    while prices is not None:
        order = world.agree(None)
        if order is None:
            return
        model_config, features = order
        data = challenger_data(prices, features, model_config.horizon, config, cache)
        trained = fit(model_config, data, train, world=world)
        again = world.agree(None)
        if again is None:
            return
        if again:
            refit(trained, prices, cache, world)


def run_retrain_rank(config: RetrainConfig, job_id: str, device: str = "cpu") -> JobReport | None:
    """One process of a retrain, in the group its launcher describes: the main one runs the job
    (and returns its report), the others follow it (and return None)."""
    world = distributed.join(device)
    try:
        if world.main:
            return run_retrain(config, job_id, world=world)
        follow_retrain(config, world)
        return None
    finally:
        distributed.leave()
