"""The CLI as a newcomer meets it: a CSV of closes, mode names for versions, report folders, replay's answers."""

from __future__ import annotations

import json
import shlex
import socket
from pathlib import Path

import pytest

from data import sources
from service.cli import build_parser, main
from service.cli.training import report_folder
from service.config import get_settings
from tests.service.test_cli import TINY
from training.registry import Registry
from training.retrain import RetrainConfig, challenger_setup

ROOT = Path(__file__).resolve().parents[2]


def closes_csv(folder: Path) -> Path:
    """IBM's bundled closes as a file of two columns, date and close."""
    ibm = sources.bundled(["IBM"])
    path = folder / "IBM.csv"
    ibm[["date", "close"]].to_csv(path, index=False, date_format="%Y-%m-%d")
    assert path.read_text().splitlines()[0] == "date,close"
    return path


def test_a_csv_of_dates_and_closes_trains_on_returns_and_is_refused_for_range(capsys, tmp_path):
    path = closes_csv(tmp_path)
    csv = ["--source", "csv", "--path", str(path), *TINY, "--artifacts", str(tmp_path / "artifacts")]
    assert main(["train", "--mode", "latent", *csv]) == 0
    assert capsys.readouterr().out.startswith("latent-")
    assert main(["train", "--mode", "latent", *csv, "--features", "returns,range"]) == 2
    assert capsys.readouterr().err == (
        "latentcast train: error: IBM: no high, low in the prices; features returns,range need the columns "
        "date, close, high, low (features returns alone need date, close)\n"
    )


def test_compare_takes_a_mode_for_its_champion_as_evaluate_does(capsys, tmp_path):
    artifacts = ["--artifacts", str(tmp_path)]
    out = ["--out", str(tmp_path / "report"), "--cost-lengths", "20"]
    assert main(["compare", *TINY, *artifacts, "--ar-version", "ar", *out]) == 2
    assert capsys.readouterr().err == f"latentcast compare: error: no ar champion in {tmp_path}\n"
    assert main(["train", "--mode", "ar", *TINY, *artifacts]) == 0
    champion = Registry(tmp_path).champion("ar")
    assert main(["compare", *TINY, *artifacts, "--ar-version", "latent", *out]) == 2
    assert capsys.readouterr().err.endswith(
        "--ar-version 'latent' names the other mode: give 'ar' or a version of ar\n"
    )
    assert main(["compare", *TINY, *artifacts, "--ar-version", "ar", *out]) == 0
    report = (tmp_path / "report" / "report.json").read_text()
    assert f'"version": "{champion}"' in report


@pytest.mark.parametrize("command", ["compare", "calibration", "backtest"])
def test_reports_go_to_the_registry_unless_told_otherwise(command, tmp_path):
    args = build_parser().parse_args([command, "--artifacts", str(tmp_path)])
    assert report_folder(args, command) == tmp_path / "reports" / command
    args = build_parser().parse_args([command, "--artifacts", str(tmp_path), "--out", "docs"])
    assert report_folder(args, command) == Path("docs")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("via", ["bulk", "stream"])
def test_replay_without_a_service_says_so_in_one_line_at_the_port_of_the_settings(via, capsys, tmp_path, monkeypatch):
    port = free_port()
    monkeypatch.setenv("LATENTCAST_PORT", str(port))
    get_settings.cache_clear()
    try:
        assert main(["replay", str(closes_csv(tmp_path)), "--via", via, "--warm", "5"]) == 1
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert err.startswith(f"latentcast replay: error: no service answers at http://127.0.0.1:{port} (")
    assert err.endswith("); start one with `latentcast serve` or pass --url\n")
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.slow  # three trainings of the default model
def test_a_promotion_offline_as_docs_retraining_md_shows_it(capsys, tmp_path):
    """docs/retraining.md's commands: an old champion, a retrain as on a later day that keeps it, one that
    promotes."""
    text = (ROOT / "docs" / "retraining.md").read_text()
    block = text.split("## Seeing a promotion offline", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line.replace("/tmp/promotion", str(tmp_path))) for line in block.splitlines()]
    assert [c[:2] for c in commands] == [["latentcast", "train"], ["latentcast", "retrain"], ["latentcast", "retrain"]]
    assert main([*commands[0][1:], "--no-progress"]) == 0
    champion = Registry(tmp_path).champion("latent")
    capsys.readouterr()
    outcomes = []
    for command in commands[1:]:
        assert main([*command[1:], "--no-progress"]) == 0
        job = json.loads(capsys.readouterr().out)
        assert job["status"] == "succeeded"
        outcomes.append(job["modes"][0])
    assert outcomes[0]["promoted"] is False and outcomes[0]["test"]["rule"] == "kept"
    assert outcomes[0]["champion_after"] == champion
    assert outcomes[1]["promoted"] is True and outcomes[1]["test"]["rule"] in ("stale", "better")
    assert Registry(tmp_path).champion("latent") not in (None, champion)


def test_retrain_as_of_reads_only_the_prices_before_that_day(capsys, tmp_path):
    artifacts = ["--artifacts", str(tmp_path)]
    small = ["--tickers", "IBM", "--hidden", "8", "--window", "10", "--horizon", "2", "--no-progress"]
    retrain = ["retrain", "--source", "bundled", "--mode", "latent", *small, *artifacts, "--holdout-days", "60"]
    assert main([*retrain, "--as-of", "2012-01-01", "--epochs", "1"]) == 0
    job = json.loads(capsys.readouterr().out)
    assert job["status"] == "succeeded" and job["data"]["last"] == "2011-12-30"
    assert main([*retrain, "--as-of", "2012-01-01", "--epochs", "1"]) == 0  # the same day again: nothing new
    assert json.loads(capsys.readouterr().out)["modes"][0]["reason"].endswith("nothing new")
    with pytest.raises(SystemExit):
        main([*retrain, "--as-of", "2012-13-01"])
    assert "argument --as-of: '2012-13-01' is not a date, YYYY-MM-DD" in capsys.readouterr().err


def test_variance_scales_are_trained_saved_and_copied_by_a_retrain_and_bad_ones_named(capsys, tmp_path):
    artifacts = ["--artifacts", str(tmp_path)]
    scales = ["--variance-scales", "0.5, 0.8,0.955", "--quantile-scale", "mix"]
    assert main(["train", "--mode", "latent", *TINY, *artifacts, *scales]) == 0
    version = capsys.readouterr().out.split()[0]
    registry = Registry(tmp_path)
    assert registry.get(version).config["variance_scales"] == [0.5, 0.8, 0.955]
    assert registry.get(version).config["quantile_scale"] == "mix"
    # the configured model has no scales: the challenger takes its champion's
    challenger, _ = challenger_setup(registry, "latent", RetrainConfig(artifacts=tmp_path))
    assert challenger.variance_scales == (0.5, 0.8, 0.955) and challenger.conv_inputs == 4
    assert challenger.quantile_scale == "mix"
    assert main(["train", "--mode", "latent", *TINY, *artifacts, "--variance-scales", "0.5,week"]) == 2
    assert "--variance-scales must be a comma list of decays, got '0.5,week'" in capsys.readouterr().err
    assert main(["train", "--mode", "ar", *TINY, *artifacts, "--variance-scales", "0.5,1.2"]) == 2
    assert "variance_scales must be distinct decays in (0, 1), got [0.5, 1.2]" in capsys.readouterr().err
