from __future__ import annotations

import numpy as np
import pytest

from data import sources
from data.feature_cache import artifacts_cache
from models.checkpoint import build_from_checkpoint, checkpoint_offsets
from models.config import DEFAULT_SCALING, ModelConfig
from tests.factories import tiny_checkpoint
from tests.training.retrain_setup import FAST, HOLDOUT, OLDER, config, trading_days, until
from training.config import TrainConfig
from training.jobs import JobStore
from training.lock import JobLock
from training.registry import Registry
from training.retrain import RetrainConfig, fetch, run_retrain, score_on_holdout


@pytest.mark.slow
def test_first_retrain_promotes_a_refit_of_each_challenger_and_reports(tmp_path):
    job = run_retrain(config(tmp_path, refit=True))
    assert job.status == "succeeded" and job.error is None
    registry = Registry(tmp_path)
    assert [m["mode"] for m in job.modes] == ["ar", "latent"]
    for outcome in job.modes:
        assert outcome["promoted"] and outcome["reason"] == "no champion yet"
        assert outcome["champion_before"] is None
        assert registry.champion(outcome["mode"]) == outcome["refit"]["version"] == outcome["champion_after"]
        assert outcome["refit"]["of"] == outcome["challenger"]
        assert registry.get(outcome["refit"]["version"]).metrics["refit_of"] == outcome["challenger"]
        assert outcome["challenger_loss"] > 0
    assert job.data["source"] == "bundled" and job.data["tickers"] == ["IBM", "MSFT"]
    # six years back from the last price, not all the source holds
    assert "2007-03-01" <= job.data["first"] <= "2007-03-05" and job.data["last"] == "2013-03-01"
    assert job.modes[0]["holdout_start"] == registry.get(job.modes[0]["challenger"]).data_span["test_start"]
    assert JobStore(tmp_path / "jobs").get(job.job_id).to_dict() == job.to_dict()


def test_recency_split_refit_and_a_stale_run(tmp_path):
    end = "2011-12-30"
    days = trading_days(end)
    job = run_retrain(until(tmp_path, end, modes=("latent",), refit=True))
    [outcome] = job.modes
    registry = Registry(tmp_path)
    challenger, refit = registry.get(outcome["challenger"]), registry.get(outcome["refit"]["version"])
    # training ends one holdout plus one validation before the end; validation ends one holdout before it
    assert challenger.data_span["validation_start"] == days[-2 * HOLDOUT]
    assert challenger.data_span["test_start"] == outcome["holdout_start"] == days[-HOLDOUT]
    assert challenger.data_span["seen_until"] == outcome["challenger_span"]["seen_until"] == days[-HOLDOUT - 1]
    assert outcome["challenger_span"]["train"].endswith(f" to before {days[-2 * HOLDOUT]}")
    # the refit champion has read every price
    assert refit.data_span["seen_until"] == refit.data_span["last"] == end == outcome["refit"]["seen_until"]
    assert refit.metrics["epochs_run"] == challenger.metrics["best_epoch"] and refit.metrics["val_loss"] is None
    assert registry.champion("latent") == refit.version
    # the same prices again: nothing newer than the champion's, so no verdict and no change
    stale = run_retrain(until(tmp_path, end, modes=("latent",)))
    assert stale.status == "skipped"
    assert stale.error == (
        f"latent: the prices end on {end}, no later than the data of champion {refit.version} ({end}): nothing new"
    )
    assert registry.champion("latent") == refit.version
    assert len(registry.versions("latent")) == 2


def test_the_refit_that_serves_is_what_the_next_retrain_scores_on_the_days_it_never_read(tmp_path):
    first = run_retrain(until(tmp_path, OLDER, modes=("ar",), refit=True))
    [before] = first.modes
    served = before["refit"]["version"]
    assert before["champion_after"] == served
    # one more month of prices: the refit has read most of the new holdout, not its last month
    end = "2012-07-31"
    job = run_retrain(until(tmp_path, end, modes=("ar",)))
    [outcome] = job.modes
    days = trading_days(end)
    unread = [d for d in days if d > OLDER]
    assert outcome["champion_scored"] == served
    assert outcome["scored_from"] == unread[0] > outcome["holdout_start"]
    assert (
        outcome["champion_scored_is"]
        == f"the champion, on the {len(unread)} holdout days from {unread[0]} that it never read"
    )
    assert outcome["test"]["days"] == len(unread) - 1  # the last day has no outcome yet
    # the champion's loss is the served refit's own, with the offsets it serves with, on those days
    registry = Registry(tmp_path)
    loaded = registry.load(served)
    model, scaler = build_from_checkpoint(loaded, served)
    prices = fetch(until(tmp_path, end)).frame
    moved = checkpoint_offsets(loaded, model.config)
    assert outcome["champion_loss"] == pytest.approx(
        score_on_holdout(model, scaler, prices, np.datetime64(unread[0]), 3, (0.1, 0.5, 0.9), moved), rel=1e-9
    )
    # a champion that has read (nearly) the whole holdout gets no verdict
    read_all = tiny_checkpoint("ar")
    read_all["data_span"] = {**read_all["data_span"], "last": "2013-02-20"}  # no split: it read all it lists
    champion = registry.register(read_all).version
    registry.promote(champion)
    job = run_retrain(config(tmp_path, modes=("ar",)))
    [outcome] = job.modes
    assert job.status == "skipped" and "challenger" not in outcome
    assert job.error == (
        f"ar: champion {champion} has read prices up to 2013-02-20: 7 holdout days left unread from "
        f"{outcome['holdout_start']}, too few for a test at horizon 3"
    )
    assert registry.champion("ar") == champion


@pytest.mark.slow
def test_a_challenger_not_shown_better_is_not_promoted_and_the_report_says_why(tmp_path):
    strong = TrainConfig(**{**FAST.to_dict(), "epochs": 4})
    first = run_retrain(until(tmp_path, OLDER, train=strong, modes=("latent",), refit=True))
    champion = first.modes[0]["champion_after"]
    # a challenger that barely moves from its random start
    weak = TrainConfig(**{**FAST.to_dict(), "epochs": 1, "lr": 1e-7, "seed": 3})
    job = run_retrain(config(tmp_path, train=weak, modes=("latent",)))
    [outcome] = job.modes
    assert job.status == "succeeded"
    assert not outcome["promoted"], outcome["reason"]
    assert outcome["challenger_loss"] > outcome["champion_loss"]
    test = outcome["test"]
    assert test["rule"] == "kept" and test["p_better"] >= 0.10 and test["statistic"] > 0
    # the champion (refit through OLDER) misses fewer newer days than would make it stale
    assert test["newer_days"] == len([d for d in trading_days("2013-03-01") if OLDER < d < outcome["holdout_start"]])
    assert outcome["reason"] == test["reason"]
    assert outcome["reason"].startswith(
        f"the challenger is not better at level 0.1 and has read only {test['newer_days']} newer days "
        "(stale after 126): DM statistic "
    )
    registry = Registry(tmp_path)
    assert registry.champion("latent") == champion == outcome["champion_after"]
    assert outcome["challenger"] in [v.version for v in registry.versions("latent")]


@pytest.mark.slow
def test_a_better_challenger_is_promoted_by_the_test(tmp_path):
    # both are scored with their conformal offsets: fit on 60 validation days, the challenger's are too noisy to
    # tell a better model, so this test validates (and holds out) 126
    weak = TrainConfig(**{**FAST.to_dict(), "epochs": 1, "lr": 1e-7})
    run_retrain(until(tmp_path, OLDER, train=weak, modes=("ar",), holdout_days=126))
    strong = TrainConfig(**{**FAST.to_dict(), "epochs": 6})
    job = run_retrain(config(tmp_path, train=strong, modes=("ar",), holdout_days=126, refit=True))
    [outcome] = job.modes
    assert outcome["promoted"], outcome["reason"]
    assert outcome["test"]["rule"] == "better" and outcome["test"]["p_better"] < 0.10
    assert Registry(tmp_path).champion("ar") == outcome["refit"]["version"]


def test_a_challenger_copies_its_champions_architecture_and_features(tmp_path):
    registry = Registry(tmp_path)
    older = tiny_checkpoint("ar", n_features=2, hidden_size=6, window=7)
    older["data_span"] = {**older["data_span"], "last": OLDER}
    champion = registry.register(older).version
    registry.promote(champion)
    job = run_retrain(config(tmp_path, modes=("ar",)))  # the configured default is returns only, hidden 8
    [outcome] = job.modes
    challenger = registry.get(outcome["challenger"])
    assert outcome["champion_scored"] == champion
    assert challenger.config == {**registry.get(champion).config}
    assert challenger.data_span["features"] == ["returns", "range"]
    assert outcome["champion_loss"] > 0 and outcome["challenger_loss"] > 0  # scored on the same holdout


def test_a_job_is_skipped_while_another_holds_the_lock(tmp_path):
    with JobLock(tmp_path / "retrain.lock", "other"):
        job = run_retrain(config(tmp_path))
    assert job.status == "skipped"
    assert job.error is not None and job.error.startswith("another retrain is running: job other")
    assert Registry(tmp_path).versions() == []


@pytest.mark.slow
def test_yfinance_falls_back_to_the_cache_then_to_bundled(tmp_path):
    def offline(tickers, start, end):
        raise ConnectionError("network is unreachable")

    job = run_retrain(config(tmp_path, source="yfinance", modes=("latent",)), download=offline)
    assert job.status == "succeeded"
    assert job.data["source"] == "bundled"
    assert job.data["reason"].startswith("yfinance failed: ConnectionError: network is unreachable; ")

    cache = RetrainConfig(artifacts=tmp_path).cache_dir
    sources.PriceCache(cache).save(sources.bundled(["IBM", "MSFT"]).query("date < '2012-01-01'"))
    job = run_retrain(config(tmp_path, source="yfinance", modes=("latent",)), download=offline)
    assert job.data["source"] == "cache" and job.data["last"] == "2011-12-30"


def test_yfinance_download_refreshes_the_cache(tmp_path):
    def online(tickers, start, end):
        return sources.bundled(list(tickers))  # stands in for a download of the same shape

    job = run_retrain(config(tmp_path, source="yfinance", modes=("ar",)), download=online)
    assert job.data["source"] == "yfinance" and job.data["reason"].startswith("downloaded ")
    assert sources.PriceCache(RetrainConfig(artifacts=tmp_path).cache_dir).load(["IBM"]).shape[0] == 3270


def test_champion_and_challenger_are_scored_with_their_conformal_offsets(tmp_path):
    registry = Registry(tmp_path)
    older = tiny_checkpoint("ar", last=OLDER)
    older["offsets"] = [[-1.0, 0.0, 1.0]] * 3  # each outer quantile a half-width further out
    champion = registry.register(older).version
    registry.promote(champion)
    job = run_retrain(config(tmp_path, modes=("ar",)))
    [outcome] = job.modes
    prices = fetch(config(tmp_path)).frame
    holdout = np.datetime64(outcome["holdout_start"])

    def loss(version: str, offsets: bool) -> float:
        loaded = registry.load(version)
        model, scaler = build_from_checkpoint(loaded, version)
        moved = checkpoint_offsets(loaded, model.config) if offsets else None
        return score_on_holdout(model, scaler, prices, holdout, 3, (0.1, 0.5, 0.9), moved)

    for version, key in ((champion, "champion_loss"), (outcome["challenger"], "challenger_loss")):
        assert outcome[key] == pytest.approx(loss(version, True), rel=1e-9)
        assert outcome[key] != pytest.approx(loss(version, False), rel=1e-6)


def test_a_first_challenger_takes_the_project_default_scaling(tmp_path):
    assert RetrainConfig(artifacts=tmp_path).model == ModelConfig()
    job = run_retrain(
        RetrainConfig(
            artifacts=tmp_path, tickers=("IBM",), source="bundled", history_years=2, modes=("latent",), train=FAST
        )
    )
    [outcome] = job.modes
    assert outcome["reason"] == "no champion yet"
    assert Registry(tmp_path).get(outcome["challenger"]).config["scaling"] == DEFAULT_SCALING


@pytest.mark.slow
def test_a_retrain_reads_features_another_job_computed_from_the_same_prices(tmp_path):
    first = run_retrain(until(tmp_path, "2012-12-31", modes=("ar",)))
    assert first.status == "succeeded", first.error
    entries = {p: p.stat().st_mtime_ns for p in artifacts_cache(tmp_path).directory.glob("*.npz")}
    assert len(entries) == 2  # IBM and MSFT, one spec: every stage of the job read the same two entries
    second = run_retrain(until(tmp_path, "2012-12-31", modes=("latent",)))
    assert second.status == "succeeded", second.error
    # not one entry rewritten: the second job computed no features
    assert {p: p.stat().st_mtime_ns for p in artifacts_cache(tmp_path).directory.glob("*.npz")} == entries
