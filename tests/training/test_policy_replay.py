from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from data import sources
from latentcast.errors import ConfigError, DataError
from models.checkpoint import build_from_checkpoint, checkpoint_offsets
from service.cli import main
from tests.training.retrain_setup import config, trading_days
from training.policy_replay import CONTENDERS, ReplayConfig, replay, retrain_days
from training.policy_report import promotions, write_report
from training.registry import Registry
from training.scoring import day_losses, holdout_spans


def test_retrain_days_are_every_nth_trading_day_from_the_start():
    prices = sources.bundled(["IBM"])
    days = retrain_days(prices, "2012-06-02", 42)  # a Saturday: the next trading day starts
    expected = [d for d in trading_days("2013-03-01") if d >= "2012-06-04"][::42]
    assert [str(d.date()) for d in days] == expected
    with pytest.raises(DataError, match=r"^the prices end on 2013-03-01: nothing to replay from 2014-01-01$"):
        retrain_days(prices, "2014-01-01", 21)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"every": 0}, "every must be a positive number of trading days, got 0"),
        ({"mode": "arx"}, "unknown mode 'arx'; valid modes: ar, latent"),
    ],
)
def test_a_bad_replay_is_refused(tmp_path, fields, message):
    with pytest.raises(ConfigError) as caught:
        ReplayConfig(retrain=config(tmp_path), **fields)
    assert str(caught.value) == message


def test_promotions_count_the_changes_of_served_version():
    assert promotions(["a", "a", "b", "b", "a"]) == 2 and promotions(["a"]) == 0


@pytest.mark.slow
def test_a_replay_serves_what_each_policy_would_and_scores_it(tmp_path):
    retrain = config(tmp_path, history_years=3, refit=False, modes=("ar",))
    setup = ReplayConfig(retrain=retrain, start="2012-06-01", every=42, mode="ar")
    result = replay(setup, tmp_path / "work")
    registry = Registry(tmp_path / "work")
    days = [d for d in trading_days("2013-03-01") if d >= "2012-06-01"][::42]
    assert result.days == days and len(result.jobs) == len(days)
    # the policy serves what its real jobs promoted; never the first champion; always every challenger
    assert result.served["policy"] == [job["champion_after"] for job in result.jobs]
    assert result.served["never"] == [result.jobs[0]["champion_after"]] * len(days)
    assert result.served["always"] == [job["challenger"] for job in result.jobs]
    assert result.jobs[0]["reason"] == "no champion yet"
    assert all("test" in job for job in result.jobs[1:])
    # each refit is its day's challenger fit through that day's price; the challengers are shared
    for day, job, version in zip(days, result.jobs, result.served["refit"], strict=True):
        meta = registry.get(version)
        assert meta.metrics["refit_of"] == job["challenger"] and meta.data_span["seen_until"] == day
    assert result.trainings == {
        "challengers": len(days),
        "refits made by the job": 0,
        "refits made for the refit contender": len(days),
    }
    # every contender is scored on the same days, each by the version serving that day
    dates = {name: result.scores[result.scores["contender"] == name]["date"].tolist() for name in CONTENDERS}
    assert all(dates[name] == dates["policy"] for name in CONTENDERS)
    assert str(dates["policy"][0].date()) == days[0]
    second = result.scores[(result.scores["contender"] == "always") & (result.scores["date"] >= days[1])]
    second = second[second["date"] < days[2]]
    version = result.served["always"][1]
    assert set(second["version"]) == {version}
    loaded = registry.load(version)
    model, scaler = build_from_checkpoint(loaded, version)
    prices = sources.bundled(["IBM", "MSFT"])
    spans = holdout_spans(model, scaler, prices, np.datetime64(days[1]), checkpoint_offsets(loaded, model.config))
    own = day_losses(spans, model.config.quantiles, 3, model.config.quantiles)
    assert second["loss"].to_numpy() == pytest.approx(own[(own.index >= days[1]) & (own.index < days[2])].to_numpy())
    assert ((second["coverage"] >= 0) & (second["coverage"] <= 1)).all()

    report = write_report(result, setup, tmp_path / "report", "latentcast retrain-backtest --test")
    written = json.loads((tmp_path / "report" / "report.json").read_text())
    assert written["contenders"] == json.loads(json.dumps(report["contenders"]))
    for name in CONTENDERS:
        row = written["contenders"][name]
        assert row["promotions"] == promotions(result.served[name]) and row["days"] == len(dates["policy"])
        losses = result.scores[result.scores["contender"] == name]["loss"]
        assert row["pinball"] == pytest.approx(float(losses.mean()))
        assert ("against_policy" in row) == (name != "policy")
    assert written["contenders"]["never"]["promotions"] == 0
    assert written["contenders"]["always"]["promotions"] == len(days) - 1
    assert sum(written["rules_fired"].values()) == len(days) and written["rules_fired"]["first"] == 1
    page = (tmp_path / "report" / "README.md").read_text()
    assert page.startswith("# The retrain policy, replayed through history\n\n`latentcast retrain-backtest --test`")
    assert (tmp_path / "report" / "served.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pd.Timestamp(written["jobs"][-1]["day"]) == pd.Timestamp(days[-1])


@pytest.mark.slow
def test_the_retrain_backtest_command_writes_its_report_and_keeps_an_earlier_replay(tmp_path, capsys):
    out = tmp_path / "report"
    command = ["retrain-backtest", "--artifacts", str(tmp_path), "--out", str(out), "--tickers", "IBM"]
    command += ["--mode", "latent", "--start", "2012-10-01", "--every", "42", "--history-years", "3"]
    command += ["--holdout-days", "60", "--epochs", "1", "--hidden", "4", "--threads", "1", "--no-progress"]
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert printed.endswith(f"report written to {out}\n")
    written = json.loads((out / "report.json").read_text())
    assert written["setup"]["mode"] == "latent" and written["setup"]["retrain_days"][0] == "2012-10-01"
    assert written["setup"]["level"] == 0.1 and written["setup"]["refit"] is False  # the settings' defaults
    assert sorted(written["contenders"]) == sorted(CONTENDERS)
    # the replay's registry is its own: a second run into the same folder is refused, nothing overwritten
    assert main(command) == 2
    work = tmp_path / "retrain-backtest"
    assert capsys.readouterr().err == (
        f"latentcast retrain-backtest: error: {work}: the replay's folder must be empty or new "
        "(it holds the replay's registry)\n"
    )
