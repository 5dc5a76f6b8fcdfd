from __future__ import annotations

import pandas as pd
import pytest

from latentcast.errors import ConfigError
from tests.training.retrain_setup import config
from training.policy_replay import CONTENDERS, Replay, ReplayConfig, replay
from training.replay_trainings import train_days


def test_trainings_need_a_process(tmp_path):
    with pytest.raises(ConfigError, match=r"^jobs must be at least 1, got 0$"):
        train_days([config(tmp_path)], "latent", 0)


def decisions(result: Replay) -> list[dict[str, object]]:
    """Each job's decision and its evidence, with the versions as their retrain day's position (a version's
    name holds the time it was made)."""
    position = {version: i for i, version in enumerate(result.served["always"])}
    keys = ("promoted", "reason", "test", "challenger_loss", "champion_loss", "scored_from", "holdout_start")
    return [
        {**{k: job.get(k) for k in keys}, "champion_after": position.get(job["champion_after"])} for job in result.jobs
    ]


def served(result: Replay) -> dict[str, list[tuple[str, int]]]:
    """What each contender served, each version as the challenger or refit of the retrain day it was made on."""
    made = {v: ("challenger", i) for i, v in enumerate(result.served["always"])}
    made.update({v: ("refit", i) for i, v in enumerate(result.served["refit"])})
    return {name: [made[v] for v in result.served[name]] for name in CONTENDERS}


def scores(result: Replay) -> pd.DataFrame:
    return result.scores.drop(columns="version").sort_values(["contender", "date"]).reset_index(drop=True)


@pytest.mark.slow
def test_trainings_fanned_out_serve_and_score_what_the_sequential_replay_does(tmp_path):
    retrain = config(tmp_path, history_years=3, refit=False, modes=("latent",))
    setup = ReplayConfig(retrain=retrain, start="2012-08-01", every=42, mode="latent")
    sequential = replay(setup, tmp_path / "one", jobs=1)
    fanned = replay(setup, tmp_path / "two", jobs=2)
    assert fanned.days == sequential.days and len(fanned.days) >= 3
    assert decisions(fanned) == decisions(sequential)
    # every job of the fanned-out replay took its challenger ready, and decided on it as the sequential one did
    assert [job["trained_beforehand"] for job in fanned.jobs] == [True] * len(fanned.days)
    assert not any(job["trained_beforehand"] for job in sequential.jobs)
    assert sequential.jobs[0]["promoted"] is True  # the first champion
    assert served(fanned) == served(sequential)  # the same retrain day's version, every day, by each contender
    pd.testing.assert_frame_equal(scores(fanned), scores(sequential), check_exact=True)
    assert (
        fanned.trainings
        == sequential.trainings
        == {
            "challengers": len(fanned.days),
            "refits made by the job": 0,
            "refits made for the refit contender": len(fanned.days),
        }
    )
