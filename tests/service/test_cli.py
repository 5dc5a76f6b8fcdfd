"""The ``latentcast`` command: data, train, evaluate, and serve (uvicorn on the app factory)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import uvicorn

from service import cli
from service.cli import main
from service.config import get_settings
from service.http import listeners
from service.http.connections import LimitedHttpProtocol, LimitedWebSocketProtocol
from tests.factories import tiny_checkpoint
from training.registry import Registry

TINY = [
    "--tickers",
    "IBM",
    "--start",
    "2006-01-01",
    "--end",
    "2009-01-01",
    "--epochs",
    "1",
    "--hidden",
    "8",
    "--window",
    "10",
    "--horizon",
    "2",
    "--no-progress",
]


def test_data_lists_tickers_rows_and_spans(capsys):
    assert main(["data"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["rows", "first", "last"]
    assert out[2].split() == ["AAPL", "3270", "2000-03-01", "2013-03-01"]
    assert [line.split()[0] for line in out[2:]] == ["AAPL", "GOOG", "IBM", "MSFT"]


def test_bad_input_exits_2_with_the_error(capsys, tmp_path):
    assert main(["data", "--tickers", "TSLA"]) == 2
    assert capsys.readouterr().err == (
        "latentcast data: error: bundled: no prices for TSLA; available: AAPL, GOOG, IBM, MSFT\n"
    )
    assert main(["data", "--source", "csv", "--path", str(tmp_path / "none.csv")]) == 2
    assert capsys.readouterr().err == f"latentcast data: error: {tmp_path / 'none.csv'}: no such file or folder\n"


def test_train_registers_and_promotes_then_skips_when_asked(capsys, tmp_path):
    artifacts = ["--artifacts", str(tmp_path)]
    assert main(["train", "--mode", "both", *TINY, *artifacts]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("-")[0] for line in lines] == ["ar", "latent"]
    assert all("(champion): val loss" in line for line in lines)
    registry = Registry(tmp_path)
    assert registry.champions() == {m: v.version for m, v in zip(["ar", "latent"], registry.versions(), strict=True)}
    assert main(["train", "--if-missing", *TINY, *artifacts]) == 0
    assert capsys.readouterr().out == f"every mode has a champion in {tmp_path}; nothing to train\n"
    assert len(registry.versions()) == 2


def test_train_pretrains_on_synthetic_paths_when_asked_and_says_so_in_its_config(capsys, tmp_path):
    pretrain = ["--pretrain-paths", "4", "--pretrain-steps", "3"]
    assert main(["train", "--mode", "latent", *TINY, *pretrain, "--artifacts", str(tmp_path)]) == 0
    assert "(champion): val loss" in capsys.readouterr().out
    (version,) = Registry(tmp_path).versions()
    assert version.metrics["train_config"]["pretrain_paths"] == 4
    assert version.metrics["train_config"]["pretrain_steps"] == 3
    assert main(["train", "--mode", "latent", *TINY, "--pretrain-paths", "-1", "--artifacts", str(tmp_path)]) == 2
    assert "pretrain_paths must be a non-negative integer, got -1" in capsys.readouterr().err


def test_evaluate_scores_the_champion_from_its_test_cut(capsys, tmp_path):
    assert main(["train", "--mode", "latent", *TINY, "--artifacts", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--version", "latent", "--tickers", "IBM", "--artifacts", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["version"] == Registry(tmp_path).champion("latent")
    assert set(report["metrics"]) == {"IBM", "pooled"}
    # scored from the version's own test cut-off to the end of the bundled data (2013)
    assert report["metrics"]["IBM"]["h1"]["count"] > 1000


def test_compare_trains_what_is_not_given_and_scores_a_given_version(capsys, tmp_path):
    artifacts = ["--artifacts", str(tmp_path)]
    assert main(["train", "--mode", "ar", *TINY, *artifacts]) == 0
    ar = Registry(tmp_path).champion("ar")
    capsys.readouterr()
    out = tmp_path / "report"
    assert main(["compare", *TINY, *artifacts, "--ar-version", str(ar), "--out", str(out), "--cost-lengths", "20"]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == [str(out / "report.json"), str(out / "report.md")]
    report = json.loads((out / "report.json").read_text())
    assert report["models"]["ar"]["version"] == ar
    assert report["models"]["latent"]["version"] is None  # trained for the report
    assert report["models"]["latent"]["training"]["train_config"]["epoch_steps"] == 50  # the backtest's budget
    assert report["view"].startswith("one fold of the backtest's machinery")
    assert [c["history"] for c in report["cost_per_forecast_us"]] == [20] * 4


def test_evaluate_without_a_champion_is_an_error(capsys, tmp_path):
    assert main(["evaluate", "--version", "ar", "--artifacts", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"latentcast evaluate: error: no ar champion in {tmp_path}\n"
    with pytest.raises(SystemExit):
        main(["train", "--mode", "arima"])


@pytest.fixture
def runs(monkeypatch) -> Iterator[list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append({"app": app, **kwargs}))
    # several workers, each on a socket of its own (service/http/listeners.py): uvicorn's config, then its supervisor
    monkeypatch.setattr(listeners, "serve_workers", lambda config: calls.append({"config": config}))
    get_settings.cache_clear()
    yield calls
    get_settings.cache_clear()


def test_serve_defaults_to_the_settings(runs, monkeypatch):
    monkeypatch.setenv("LATENTCAST_PORT", "8765")
    monkeypatch.delenv("LATENTCAST_HOST", raising=False)
    assert cli.main(["serve"]) == 0
    assert runs == [
        {
            "app": "service.http.app:create_app",
            "factory": True,
            "host": "127.0.0.1",
            "port": 8765,
            "workers": 1,
            "log_level": "info",
            "http": LimitedHttpProtocol,  # the front door's limits (docs/limits.md)
            "timeout_keep_alive": 5,
            # a WebSocket message bounded as a body is (docs/limits.md), its connection's bytes freed when lost
            "ws": LimitedWebSocketProtocol,
            "ws_max_size": 1_048_576,
            "timeout_worker_healthcheck": 60,
        }
    ]


def test_flags_override_the_settings(runs):
    assert cli.main(["serve", "--host", "0.0.0.0", "--port", "9000"]) == 0
    assert (runs[0]["host"], runs[0]["port"]) == ("0.0.0.0", 9000)


def test_several_workers_need_the_redis_store(runs, monkeypatch, capsys):
    monkeypatch.setenv("LATENTCAST_STORE", "memory")
    assert cli.main(["serve", "--workers", "2"]) == 2
    assert runs == []
    assert capsys.readouterr().err == (
        "latentcast serve: error: several workers need LATENTCAST_STORE=redis: "
        "with the memory store each would hold its own sessions\n"
    )
    monkeypatch.setenv("LATENTCAST_STORE", "redis")
    get_settings.cache_clear()
    assert cli.main(["serve", "--workers", "2"]) == 0
    if not listeners.reuse_port_balances():
        assert runs[0]["workers"] == 2
        return
    [call] = runs
    config = call["config"]  # uvicorn's, with the options of a single worker's uvicorn.run
    assert (config.app, config.factory, config.workers, config.http) == (
        "service.http.app:create_app",
        True,
        2,
        LimitedHttpProtocol,
    )
    assert (config.timeout_keep_alive, config.timeout_worker_healthcheck) == (5, 60)


def test_registry_prune_says_what_it_would_remove_and_why_then_removes_it(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTCAST_RETAIN_PREVIOUS_CHAMPIONS", "0")
    get_settings.cache_clear()
    month_ago = datetime.now(UTC) - timedelta(days=30)
    challenger = Registry(tmp_path, clock=lambda: month_ago).register(tiny_checkpoint("latent", seed=1)).version
    later = Registry(tmp_path, clock=lambda: month_ago + timedelta(minutes=1))
    replaced = later.register(tiny_checkpoint("latent", seed=2)).version
    later.promote(replaced)
    registry = Registry(tmp_path)
    champion = registry.register(tiny_checkpoint("latent", seed=3)).version
    registry.promote(champion)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    long_ago = datetime.now().timestamp() - 100 * 86400
    for name in ("20260101T000000-a1b2c3.json", "20260101T000000-a1b2c3.log"):
        (jobs / name).write_text("{}")
        os.utime(jobs / name, (long_ago, long_ago))
    try:
        assert main(["registry", "prune", "--dry-run", "--artifacts", str(tmp_path)]) == 0
        said = capsys.readouterr().out.splitlines()
        assert said == [
            f"would remove {challenger}: a challenger older than 14 days",
            f"would remove {replaced}: a latent champion before the last 0",
            "would remove jobs/20260101T000000-a1b2c3.json: a finished job's report or log, older than 90 days",
            "would remove jobs/20260101T000000-a1b2c3.log: a finished job's report or log, older than 90 days",
        ]
        assert len(registry.versions()) == 3 and len(list(jobs.iterdir())) == 2
        assert main(["registry", "prune", "--artifacts", str(tmp_path)]) == 0
        assert capsys.readouterr().out.splitlines() == [line.replace("would remove", "removed") for line in said]
        assert [v.version for v in registry.versions()] == [champion] and list(jobs.iterdir()) == []
        assert main(["registry", "prune", "--artifacts", str(tmp_path)]) == 0
        assert capsys.readouterr().out == "nothing to remove\n"
    finally:
        get_settings.cache_clear()


def test_a_retrain_job_prunes_once_it_concludes(capsys, tmp_path):
    month_ago = datetime.now(UTC) - timedelta(days=30)
    challenger = Registry(tmp_path, clock=lambda: month_ago).register(tiny_checkpoint("latent", seed=1)).version
    get_settings.cache_clear()
    tiny = [*TINY[:2], *TINY[6:]]  # a retrain reads its source whole: no --start, --end
    assert main(["retrain", "--source", "bundled", "--mode", "latent", *tiny, "--artifacts", str(tmp_path)]) == 0
    capsys.readouterr()
    assert challenger not in {v.version for v in Registry(tmp_path).versions()}


def test_backtest_tests_the_scaling_against_another(tmp_path, capsys):
    folds = ["--folds", "1", "--test-days", "40", "--validation-days", "40", "--seeds", "0", "--threads", "1"]
    common = ["backtest", *TINY, *folds, "--jobs", "1", "--epoch-steps", "5", "--out", str(tmp_path)]
    assert main([*common, "--scaling", "volatility", "--other-scalings", "global", "--search-trials", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(tmp_path / "search.json")
    sets = [line for line in lines if "model confidence set" in line]
    verdicts = [line for line in lines if line.startswith("horizon ") and line not in sets]
    # latent against ar and five baselines (HAR-range among them), ar against the five; each mode against its twin
    assert len(verdicts) == 2 * 13 and len(sets) == 2
    assert any(v.startswith("horizon 2: ") and "latent, global scaling" in v for v in verdicts)
    report = json.loads((tmp_path / "backtest.json").read_text())
    assert report["config"]["model"]["scaling"] == "volatility"
    assert report["config"]["backtest"]["scalings"] == ["global"]
    assert set(report["search"]["choices"]) == {"ar", "latent"}
    # a later report reuses the search, and runs none of its own
    again = tmp_path / "again"
    reuse = ["--search", str(tmp_path / "search.json"), "--out", str(again)]
    assert main([*common[:-2], *reuse, "--scaling", "volatility"]) == 0
    assert not (again / "search.json").exists()
    assert json.loads((again / "backtest.json").read_text())["search"] == report["search"]
    # a copy of the prices with every return x3: another source, the same protocol
    wild = tmp_path / "wild"
    assert main([*common[:-2], "--search-trials", "0", "--rescale", "3", "--out", str(wild)]) == 0
    wild_report = json.loads((wild / "backtest.json").read_text())
    assert wild_report["config"]["data"]["source"] == "bundled (returns x3)" and wild_report["search"] is None
    capsys.readouterr()
    assert main([*common, "--search-trials", "0", "--rescale", "-1"]) == 2
    assert capsys.readouterr().err == "latentcast backtest: error: a return multiplier must be positive, got -1.0\n"
    assert main([*common, "--scaling", "global", "--other-scalings", "global"]) == 2
    assert capsys.readouterr().err == (
        "latentcast backtest: error: the models' own scaling 'global' cannot be an other scaling too\n"
    )
