"""The latentcast command: data, train, evaluate, compare, calibration, backtest, serve, retrain,
retrain-backtest, replay, schedule, registry."""

from __future__ import annotations

import argparse
from pathlib import Path

from latentcast_client.replay import ReplayPlan

from data import fetch, sources
from models.config import MODES, SCALINGS
from service.cli.arguments import (
    CommandParser,
    add_artifacts_argument,
    add_model_arguments,
    add_process_arguments,
    add_source_arguments,
    iso_date,
)
from service.cli.retraining import run_prune, run_retrain_backtest, run_retrain_command, run_schedule
from service.cli.serving import run_data, run_replay, run_serve
from service.cli.training import run_backtest_command, run_calibration, run_compare, run_evaluate, run_train
from training.backtest import BacktestConfig
from training.calibration import CalibrationConfig
from training.costs import DEFAULT_LENGTHS
from training.fanout import default_jobs
from training.policy_replay import ReplayConfig
from training.search import SearchConfig


def add_policy_arguments(parser: argparse.ArgumentParser) -> None:
    """Where a retrain's prices come from and its rule (defaults: LATENTCAST_RETRAIN_*)."""
    parser.add_argument(
        "--source",
        choices=sources.SOURCES,
        help="where prices come from; yfinance falls back to the disk cache, then to the bundled prices "
        "(default: LATENTCAST_RETRAIN_SOURCE)",
    )
    parser.add_argument(
        "--path", help="file or folder of prices (sources csv and parquet; default: LATENTCAST_RETRAIN_PATH)"
    )
    parser.add_argument("--tickers", nargs="+", help="the tickers to learn from (default: LATENTCAST_RETRAIN_TICKERS)")
    parser.add_argument(
        "--level",
        type=float,
        help="level of the one-sided test a challenger must pass (default: LATENTCAST_RETRAIN_LEVEL)",
    )
    parser.add_argument(
        "--stale-days",
        type=int,
        help="newer trading days that let a challenger that is not worse replace the champion "
        "(default: LATENTCAST_RETRAIN_STALE_DAYS)",
    )
    parser.add_argument(
        "--holdout-days",
        type=int,
        help="newest trading days scored, as many validate before them (default: LATENTCAST_RETRAIN_HOLDOUT_DAYS)",
    )
    parser.add_argument(
        "--history-years", type=int, help="years of prices to learn from (default: LATENTCAST_RETRAIN_HISTORY_YEARS)"
    )
    parser.add_argument(
        "--refit",
        action=argparse.BooleanOptionalAction,
        help="refit a promoted challenger through the newest price (default: LATENTCAST_RETRAIN_REFIT)",
    )


def build_parser() -> CommandParser:
    parser = CommandParser(prog="latentcast", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser(
        "data", help="list the tickers, rows and date spans of a price source; fetch: fill the yfinance cache"
    )
    data.add_argument("action", nargs="?", choices=("list", "fetch"), default="list", help="list (default) or fetch")
    add_source_arguments(data)
    add_artifacts_argument(data)
    data.add_argument(
        "--tickers-file", type=Path, help="fetch: a file of tickers, one a line (default: only --tickers)"
    )
    data.add_argument("--chunk", type=int, default=fetch.DEFAULT_CHUNK, help="fetch: tickers per download")
    data.add_argument("--no-progress", action="store_true", help="fetch: no progress bar")
    data.set_defaults(handler=run_data)

    train = commands.add_parser("train", help="train a model, register it as a new version")
    add_source_arguments(train)
    add_model_arguments(train)
    train.add_argument("--mode", choices=[*MODES, "both"], default="both", help="which mode to train")
    train.add_argument("--promote", action="store_true", help="make it the champion (default: only if none)")
    train.add_argument("--if-missing", action="store_true", help="skip a mode that already has a champion")
    add_process_arguments(train)
    train.set_defaults(handler=run_train)

    evaluate = commands.add_parser("evaluate", help="score a version on the test span of its data")
    add_source_arguments(evaluate)
    evaluate.add_argument("--version", required=True, help="a version id, or a mode for its champion")
    add_artifacts_argument(evaluate)
    evaluate.set_defaults(handler=run_evaluate)
    serve = commands.add_parser("serve", help="run the HTTP service with uvicorn")
    serve.add_argument("--host", help="interface to bind (default: LATENTCAST_HOST, else 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: LATENTCAST_PORT, else 8000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (more than 1 needs the redis store)")
    serve.set_defaults(handler=run_serve)

    compare = commands.add_parser(
        "compare",
        help="one fold of the backtest: ar vs latent vs baselines on one test span, or the registered versions: "
        "report.json, report.md, plots",
    )
    add_source_arguments(compare)
    add_model_arguments(compare)
    compare.add_argument(
        "--ar-version",
        help="score this registered ar version (or `ar`: its champion) instead of training one (default: train one)",
    )
    compare.add_argument(
        "--latent-version",
        help="score this registered latent version (or `latent`: its champion) instead of training one "
        "(default: train one)",
    )
    compare.add_argument(
        "--epoch-steps",
        type=int,
        default=BacktestConfig().epoch_steps,
        help="optimiser steps per epoch in both modes, as the backtest trains (0: an epoch is one pass)",
    )
    compare.add_argument("--out", type=Path, help="report folder (default: ARTIFACTS/reports/compare)")
    compare.add_argument("--plot-ticker", help="ticker of the forecast plot (default: the first)")
    compare.add_argument(
        "--cost-lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS), help="history lengths to time"
    )
    compare.set_defaults(handler=run_compare)

    calibration = commands.add_parser(
        "calibration",
        help="10-90%% coverage and pinball of global vs volatility scaling, with conformal offsets, on the prices "
        "and on copies with their returns rescaled, and of sessions by age (forecasts since they opened)",
    )
    add_source_arguments(calibration)
    add_model_arguments(calibration)
    calibration.add_argument(
        "--scales",
        type=float,
        nargs="+",
        default=list(CalibrationConfig.scales),
        help="return multipliers of the copies scored (1: the prices as they are)",
    )
    calibration.add_argument(
        "--out",
        type=Path,
        help="report folder (default: ARTIFACTS/reports/calibration; docs/ holds the committed one)",
    )
    calibration.set_defaults(handler=run_calibration)
    backtest = commands.add_parser(
        "backtest",
        help="the verdict: walk-forward folds, each trained anew on equal budgets, Holm-adjusted Diebold-Mariano "
        "tests and model confidence sets: JSON, Markdown, plot",
    )
    add_source_arguments(backtest)
    add_model_arguments(backtest)
    defaults = BacktestConfig()
    backtest.add_argument("--folds", type=int, default=defaults.folds, help="test blocks, newest data last")
    backtest.add_argument("--test-days", type=int, default=defaults.test_days, help="trading days per test block")
    backtest.add_argument(
        "--validation-days", type=int, default=defaults.validation_days, help="trading days validating each fold"
    )
    backtest.add_argument(
        "--seeds", type=int, nargs="+", default=list(defaults.seeds), help="one training run per seed and fold"
    )
    backtest.add_argument(
        "--other-scalings",
        choices=SCALINGS,
        nargs="+",
        default=[],
        help="also train ar and latent with these scalings, each tested against the --scaling ones",
    )
    backtest.add_argument(
        "--epoch-steps",
        type=int,
        default=defaults.epoch_steps,
        help="optimiser steps per epoch in both modes, so that ar and latent train on the same budget "
        "(0: an epoch is one pass over the data)",
    )
    backtest.add_argument(
        "--jobs", type=int, default=default_jobs(), help="trainings run at once, one local process each"
    )
    backtest.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="run the trainings (and the search's) as tasks on the Ray cluster at ADDRESS (host:port, ray://..., "
        "or auto), each asking for --threads CPUs, instead of on --jobs local processes; a search still asks "
        "Optuna for --jobs trials at a time (default: local processes; needs the ray extra)",
    )
    backtest.add_argument(
        "--search-trials",
        type=int,
        default=SearchConfig.trials,
        help="Optuna trials per mode choosing its learning rate, hidden size and window (ar) or bptt (latent) "
        "on the first fold's validation span, before any test block; written to search.json (0: no search)",
    )
    backtest.add_argument(
        "--search",
        type=Path,
        help="reuse the choices of this search.json instead of searching (default: search when --search-trials is set)",
    )
    backtest.add_argument(
        "--rescale", type=float, default=1.0, help="multiply every daily log return by this (a quieter or wilder copy)"
    )
    backtest.add_argument(
        "--closes-only",
        action="store_true",
        help="with --variance-source range_or_returns: also score the models with every range removed (sessions "
        "of closes only) and train models of closes on the same seeds, each tested against them",
    )
    backtest.add_argument("--out", type=Path, help="report folder (default: ARTIFACTS/reports/backtest)")
    backtest.set_defaults(handler=run_backtest_command)

    retrain = commands.add_parser(
        "retrain",
        help="fetch fresh prices, train challengers, promote the better (defaults: LATENTCAST_RETRAIN_*)",
    )
    retrain.add_argument("--mode", choices=[*MODES, "both"], default="both", help="which mode to retrain")
    add_policy_arguments(retrain)
    retrain.add_argument(
        "--as-of",
        type=iso_date,
        metavar="YYYY-MM-DD",
        help="retrain as on this day: only the prices before it (default: every price fetched)",
    )
    retrain.add_argument("--job-id", help="report under this job id (the service passes one; default: a new id)")
    add_model_arguments(retrain, epochs=None)
    add_process_arguments(retrain)
    retrain.set_defaults(handler=run_retrain_command)

    policy = commands.add_parser(
        "retrain-backtest",
        help="replay the retrain policy through history against never retraining, always promoting and refitting",
    )
    policy.add_argument(
        "--mode",
        choices=MODES,
        default=ReplayConfig.mode,
        help="the mode whose retrains are replayed (default: %(default)s)",
    )
    policy.add_argument("--start", default=ReplayConfig.start, help="the first retrain day (default: %(default)s)")
    policy.add_argument(
        "--every", type=int, default=ReplayConfig.every, help="trading days between retrains (default: %(default)s)"
    )
    policy.add_argument("--work", type=Path, help="registry of the replay (default: ARTIFACTS/retrain-backtest)")
    policy.add_argument("--out", type=Path, help="report folder (default: ARTIFACTS/reports/retraining)")
    policy.add_argument(
        "--jobs",
        type=int,
        default=default_jobs(),
        help="processes training the retrain days' challengers and refits at once, before the jobs decide in "
        "order; 1: each job trains its own (default: the cores, %(default)s)",
    )
    add_policy_arguments(policy)
    add_model_arguments(policy, epochs=None)
    policy.set_defaults(handler=run_retrain_backtest)

    replay = commands.add_parser(
        "replay", help="stream a CSV of prices into sessions of a running service, one per ticker; CSV forecasts out"
    )
    replay.add_argument("path", help="CSV file or folder of prices (columns as `latentcast data --source csv` reads)")
    replay.add_argument(
        "--url",
        help="the service (default: LATENTCAST_HOST and LATENTCAST_PORT as `latentcast serve` reads them, "
        "127.0.0.1 for 0.0.0.0: http://127.0.0.1:8000 when neither is set)",
    )
    replay.add_argument("--api-key", help="the key, when the service requires one (default: LATENTCAST_API_KEY)")
    replay.add_argument("--tickers", nargs="+", help="only these tickers (default: every ticker of the file)")
    replay.add_argument("--mode", choices=MODES, help="open the sessions on this mode's champion (default: latent)")
    replay.add_argument("--version", help="open the sessions on this exact version (default: the --mode champion)")
    replay.add_argument("--warm", type=int, default=ReplayPlan.warm, help="bars each session opens with")
    replay.add_argument(
        "--via",
        choices=("bulk", "stream"),
        default=ReplayPlan.via,
        help="one bulk request or one WebSocket message per date",
    )
    replay.add_argument("--out", type=Path, help="write the forecasts to this CSV file (default: print them)")
    replay.set_defaults(handler=run_replay)

    registry = commands.add_parser("registry", help="look after the registry folder")
    registry_commands = registry.add_subparsers(dest="registry_command", required=True, metavar="ACTION")
    prune = registry_commands.add_parser(
        "prune", help="remove the versions, job reports and cached prices retention lets go (LATENTCAST_RETAIN_*)"
    )
    prune.add_argument("--dry-run", action="store_true", help="print what would be removed and why; remove nothing")
    add_artifacts_argument(prune)
    prune.set_defaults(handler=run_prune)

    schedule = commands.add_parser("schedule", help="run the retrain on LATENTCAST_RETRAIN_CRON, one job at a time")
    schedule.add_argument("--check", action="store_true", help="exit 0 if a scheduler's heartbeat is fresh")
    schedule.set_defaults(handler=run_schedule)
    return parser
