"""The latentcast command: data, train, evaluate, compare, calibration, backtest, serve, retrain, replay,
schedule, registry."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from data import fetch, sources
from data.errors import ConfigError, ForecastError
from data.features import DEFAULT_FEATURES
from models.config import CELLS, DEFAULT_SCALING, MODES, SCALINGS, ModelConfig
from service.client import ApiError, Client, ClientSettings
from service.client.replay import ReplayPlan, replay, write_rows
from service.config import get_settings
from service.pruning import prune_all
from training import distributed
from training.backtest import BacktestConfig, run_backtest
from training.backtest_report import write_report as write_backtest
from training.calibration import CalibrationConfig, calibration_report, write_calibration_report
from training.compare import compare, load_contender, train_contenders, write_report
from training.config import TrainConfig
from training.costs import DEFAULT_LENGTHS
from training.dataset import TrainingData
from training.pipeline import train_and_register_in
from training.registry import Registry
from training.retrain import RetrainConfig, run_retrain
from training.scoring import score_version

# the key of `latentcast replay`, read from the environment so that it stays out of shell histories
API_KEY_VARIABLE = "LATENTCAST_API_KEY"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if "artifacts" in args and args.artifacts is None:
            args.artifacts = get_settings().artifacts
        code: int = args.handler(args)
    except ForecastError as exc:
        print(f"latentcast {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latentcast", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser(
        "data", help="list the tickers, rows and date spans of a price source; fetch: fill the yfinance cache"
    )
    data.add_argument("action", nargs="?", choices=("list", "fetch"), default="list", help="list (default) or fetch")
    add_source_arguments(data)
    add_artifacts_argument(data)
    data.add_argument("--tickers-file", type=Path, help="fetch: a file of tickers, one a line")
    data.add_argument("--chunk", type=int, default=fetch.DEFAULT_CHUNK, help="fetch: tickers per download")
    data.add_argument("--no-progress", action="store_true", help="fetch: no progress bar")
    data.set_defaults(handler=run_data)

    train = commands.add_parser("train", help="train a model, register it as a new version")
    add_source_arguments(train)
    add_model_arguments(train)
    train.add_argument("--mode", choices=[*MODES, "both"], default="both", help="which mode to train")
    train.add_argument("--promote", action="store_true", help="make it the champion (default: only if none)")
    train.add_argument("--if-missing", action="store_true", help="skip a mode that already has a champion")
    train.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="data-parallel training processes on this host (under torchrun: leave at 1, torchrun starts them)",
    )
    train.add_argument(
        "--device", choices=distributed.DEVICES, default="cpu", help="where to train (auto: cuda when present)"
    )
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

    compare = commands.add_parser("compare", help="ar vs latent vs baselines: report.json, report.md, plots")
    add_source_arguments(compare)
    add_model_arguments(compare)
    compare.add_argument("--ar-version", help="score this registered ar version instead of training one")
    compare.add_argument("--latent-version", help="score this registered latent version instead of training one")
    compare.add_argument("--out", type=Path, help="report folder (default: ARTIFACTS/reports/compare)")
    compare.add_argument("--plot-ticker", help="ticker of the forecast plot (default: the first)")
    compare.add_argument(
        "--cost-lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS), help="history lengths to time"
    )
    compare.set_defaults(handler=run_compare)

    calibration = commands.add_parser(
        "calibration",
        help="10-90%% coverage and pinball of global vs volatility scaling, with conformal offsets, on the prices "
        "and on copies with their returns rescaled",
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
    calibration.add_argument("--out", type=Path, default=Path("docs"), help="report folder (default: docs)")
    calibration.set_defaults(handler=run_calibration)
    backtest = commands.add_parser(
        "backtest", help="walk-forward folds, each trained anew, with Diebold-Mariano tests: JSON, Markdown, plot"
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
    backtest.add_argument("--out", type=Path, help="report folder (default: ARTIFACTS/reports/backtest)")
    backtest.set_defaults(handler=run_backtest_command)

    retrain = commands.add_parser(
        "retrain",
        help="fetch fresh prices, train challengers, promote the better (defaults: LATENTCAST_RETRAIN_*)",
    )
    retrain.add_argument(
        "--source", choices=sources.SOURCES, help="yfinance falls back to the disk cache, then to the bundled prices"
    )
    retrain.add_argument("--path", help="CSV file or folder (source csv)")
    retrain.add_argument("--tickers", nargs="+")
    retrain.add_argument("--mode", choices=[*MODES, "both"], default="both")
    retrain.add_argument("--margin", type=float, help="relative loss improvement a challenger needs")
    retrain.add_argument("--holdout-days", type=int, help="newest trading days scored (as many validate before them)")
    retrain.add_argument("--history-years", type=int, help="years of prices to learn from")
    retrain.add_argument(
        "--refit",
        action=argparse.BooleanOptionalAction,
        help="refit a promoted challenger through the newest price (default: LATENTCAST_RETRAIN_REFIT)",
    )
    retrain.add_argument("--job-id", help="report under this job id (the service passes one)")
    add_model_arguments(retrain, epochs=None)
    retrain.set_defaults(handler=run_retrain_command)

    replay = commands.add_parser(
        "replay", help="stream a CSV of prices into sessions of a running service, one per ticker; CSV forecasts out"
    )
    replay.add_argument("path", help="CSV file or folder of prices (columns as `latentcast data --source csv` reads)")
    replay.add_argument("--url", default="http://127.0.0.1:8000", help="the service (default: %(default)s)")
    replay.add_argument("--api-key", help="the key, when the service requires one (default: LATENTCAST_API_KEY)")
    replay.add_argument("--tickers", nargs="+", help="only these tickers")
    replay.add_argument("--mode", choices=MODES, help="open the sessions on this mode's champion (default: latent)")
    replay.add_argument("--version", help="open the sessions on this exact version")
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


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", choices=sources.SOURCES, default="bundled", help="where prices come from")
    parser.add_argument("--path", help="CSV file or folder (source csv)")
    parser.add_argument("--tickers", nargs="+", help="only these tickers")
    parser.add_argument("--start", help="first date, YYYY-MM-DD")
    parser.add_argument("--end", help="end date (exclusive), YYYY-MM-DD")


def add_artifacts_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--artifacts", type=Path, help="registry folder (default: LATENTCAST_ARTIFACTS, else ./artifacts)"
    )


def add_model_arguments(parser: argparse.ArgumentParser, epochs: int | None = TrainConfig.epochs) -> None:
    model, train = ModelConfig(), TrainConfig()
    parser.add_argument("--features", default=",".join(DEFAULT_FEATURES), help="comma list of returns,range,volume")
    parser.add_argument("--cell", choices=CELLS, default=model.cell)
    parser.add_argument("--hidden", type=int, default=model.hidden_size, help="hidden units of the recurrent core")
    parser.add_argument("--layers", type=int, default=model.num_layers)
    parser.add_argument("--window", type=int, default=model.window, help="ar mode's window")
    parser.add_argument("--horizon", type=int, default=model.horizon)
    parser.add_argument(
        "--scaling",
        choices=SCALINGS,
        default=DEFAULT_SCALING,
        help="returns over the training std (global) or over each stream's own EWMA volatility (volatility)",
    )
    parser.add_argument(
        "--quantiles", default=",".join(str(q) for q in model.quantiles), help="comma list of quantile levels"
    )
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--seed", type=int, default=train.seed)
    parser.add_argument("--threads", type=int, default=train.threads, help="torch threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_artifacts_argument(parser)


def load_prices(args: argparse.Namespace) -> pd.DataFrame:
    return sources.load(args.source, tickers=args.tickers, path=args.path, start=args.start, end=args.end)


def model_config(args: argparse.Namespace, mode: str) -> ModelConfig:
    """The model to train; ``ConfigError`` if it is invalid or larger than the service would serve."""
    try:
        quantiles = tuple(float(q) for q in args.quantiles.split(","))
    except ValueError as exc:
        raise ConfigError(f"--quantiles must be a comma list of numbers, got {args.quantiles!r}") from exc
    config = ModelConfig(
        mode=mode,
        cell=args.cell,
        n_features=len(args.features.split(",")),
        hidden_size=args.hidden,
        num_layers=args.layers,
        window=args.window,
        horizon=args.horizon,
        quantiles=quantiles,
        scaling=args.scaling,
    )
    # refused before training, not after: the service would not load it
    problem = get_settings().model_bounds.problem(config.horizon, len(config.quantiles))
    if problem is not None:
        raise ConfigError(f"{problem}: the service would refuse this model")
    return config


def train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(epochs=args.epochs, seed=args.seed, threads=args.threads, progress=not args.no_progress)


def run_data(args: argparse.Namespace) -> int:
    if args.action == "list":
        print(sources.summary(load_prices(args)).to_string())
        return 0
    tickers = [t.upper() for t in args.tickers or []]
    if args.tickers_file is not None:
        tickers += [t for t in fetch.read_tickers(args.tickers_file) if t not in tickers]
    if not tickers:
        raise ConfigError("data fetch needs --tickers-file or --tickers")
    cache = sources.PriceCache(RetrainConfig(artifacts=args.artifacts).cache_dir)
    report = fetch.fill_cache(tickers, cache, chunk=args.chunk, start=args.start, progress=not args.no_progress)
    print(f"{len(report.fetched)} fetched, {len(report.cached)} already cached in {cache.directory}")
    for ticker, reason in report.failed.items():
        print(f"{ticker}: not fetched: {reason}", file=sys.stderr)
    return 1 if report.failed else 0


def run_train(args: argparse.Namespace) -> int:
    """Train in this process, or in ``--nproc`` processes started by ``torch.multiprocessing.spawn``.

    Under ``torchrun`` (or in a spawned process) the environment names this
    process's rank and the group it joins.
    """
    if args.nproc > 1 and not distributed.launched():
        distributed.spawn(args.nproc, run_train_rank, args)
        return 0
    world = distributed.join(args.device)
    try:
        return train_modes(args, world)
    finally:
        distributed.leave()


def run_train_rank(args: argparse.Namespace) -> None:
    """One spawned training process: logs as the parent does, then trains its shard."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_train(args)


def train_modes(args: argparse.Namespace, world: distributed.World) -> int:
    registry = Registry(args.artifacts)
    modes = list(MODES) if args.mode == "both" else [args.mode]
    if args.if_missing:
        modes = [m for m in modes if registry.champion(m) is None]
        if not modes:
            if world.main:
                print(f"every mode has a champion in {args.artifacts}; nothing to train")
            return 0
    prices = load_prices(args)
    config = train_config(args)
    if not world.main:  # one progress bar, the main process's
        config = TrainConfig.from_dict({**config.to_dict(), "progress": False})
    for mode in modes:
        version = train_and_register_in(
            world,
            registry,
            prices,
            args.source,
            model_config(args, mode),
            config,
            features=tuple(args.features.split(",")),
            promote=args.promote,
        )
        if version is not None:
            champion = " (champion)" if registry.champion(mode) == version.version else ""
            print(f"{version.version}{champion}: val loss {version.metrics['val_loss']:.4f}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    registry = Registry(args.artifacts)
    version = registry.champion(args.version) if args.version in MODES else args.version
    if version is None:
        print(f"latentcast evaluate: error: no {args.version} champion in {args.artifacts}", file=sys.stderr)
        return 2
    report = score_version(registry, version, load_prices(args))
    print(json.dumps(report, indent=2))
    return 0


def run_compare(args: argparse.Namespace) -> int:
    prices = load_prices(args)
    features = tuple(args.features.split(","))
    data = TrainingData.prepare(prices, features, args.horizon)
    registry = Registry(args.artifacts)
    given = {"ar": args.ar_version, "latent": args.latent_version}
    to_train = [m for m in MODES if given[m] is None]
    trained = {c.mode: c for c in train_contenders(data, model_config(args, "latent"), train_config(args), to_train)}
    contenders = [trained[m] if m in trained else load_contender(registry, str(given[m])) for m in MODES]
    comparison = compare(data, contenders, args.source, prices, tuple(args.cost_lengths))
    out = args.out or args.artifacts / "reports" / "compare"
    for path in write_report(comparison, out, args.plot_ticker):
        print(path)
    return 0


def run_calibration(args: argparse.Namespace) -> int:
    prices = load_prices(args)
    features = tuple(args.features.split(","))
    config = CalibrationConfig(scales=tuple(args.scales))
    report = calibration_report(prices, model_config(args, "latent"), train_config(args), features, config, args.source)
    command = "latentcast " + " ".join(sys.argv[1:]) if sys.argv[1:] else "latentcast calibration"
    for path in write_calibration_report(report, args.out, command):
        print(path)
    return 0


def run_backtest_command(args: argparse.Namespace) -> int:
    config = BacktestConfig(
        folds=args.folds,
        test_days=args.test_days,
        validation_days=args.validation_days,
        seeds=tuple(args.seeds),
        scalings=tuple(args.other_scalings),
    )
    features = tuple(args.features.split(","))
    prices = load_prices(args)
    result = run_backtest(prices, features, model_config(args, "latent"), train_config(args), config, args.source)
    for path in write_backtest(result, args.out or args.artifacts / "reports" / "backtest"):
        print(path)
    for test in result.tests:
        print(f"horizon {test['horizon']}: {test['verdict']}")
    return 0


def run_retrain_command(args: argparse.Namespace) -> int:
    settings = get_settings()
    if args.epochs is None:
        args.epochs = settings.retrain_epochs
    config = RetrainConfig(
        artifacts=args.artifacts,
        tickers=tuple(t.upper() for t in args.tickers or settings.retrain_tickers),
        source=args.source or settings.retrain_source,
        path=args.path or settings.retrain_path,
        modes=tuple(MODES) if args.mode == "both" else (args.mode,),
        margin=settings.retrain_margin if args.margin is None else args.margin,
        holdout_days=args.holdout_days or settings.retrain_holdout_days,
        history_years=args.history_years or settings.retrain_history_years,
        refit=settings.retrain_refit if args.refit is None else args.refit,
        features=tuple(args.features.split(",")),
        model=model_config(args, "latent"),
        train=train_config(args),
    )
    job = run_retrain(config, args.job_id)
    print(json.dumps(job.to_dict(), indent=2))
    if job.status != "skipped":  # a skipped job ran beside another, whose own prune follows it
        for removal in prune_all(settings, args.artifacts):
            logging.getLogger(__name__).info("retention removed %s (%s)", removal.what, removal.reason)
    return 0 if job.status in ("succeeded", "skipped") else 1


def run_replay(args: argparse.Namespace) -> int:
    if args.warm < 1:
        raise ConfigError(f"--warm must be at least 1, got {args.warm}")
    prices = sources.load("csv", tickers=args.tickers, path=args.path)
    plan = ReplayPlan(warm=args.warm, mode=args.mode, version=args.version, via=args.via)
    key = args.api_key or os.environ.get(API_KEY_VARIABLE)
    try:
        with Client(ClientSettings(args.url, api_key=key)) as client, contextlib.ExitStack() as files:
            out = files.enter_context(args.out.open("w", newline="")) if args.out else sys.stdout
            count = write_rows(replay(client, prices, plan), out)
    except ApiError as exc:
        print(f"latentcast replay: error: the service answered {exc}", file=sys.stderr)
        return 1
    if args.out:
        print(f"{count} forecast rows in {args.out}")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    removals = prune_all(get_settings(), args.artifacts, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for removal in removals:
        print(f"{verb} {removal.what}: {removal.reason}")
    if not removals:
        print("nothing to remove")
    return 0


def run_schedule(args: argparse.Namespace) -> int:
    from service.scheduler import heartbeat_is_fresh, run_scheduler  # APScheduler only for this command

    settings = get_settings()
    if args.check:
        fresh, why = heartbeat_is_fresh(settings)
        print(why)
        return 0 if fresh else 1
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))  # containers stop with SIGTERM
    run_scheduler(settings)
    return 0


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn  # only this command needs it

    settings = get_settings()
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    if args.workers > 1 and settings.store == "memory":
        raise ConfigError(
            "several workers need LATENTCAST_STORE=redis: with the memory store each would hold its own sessions"
        )
    from service.connections import LimitedHttpProtocol, allow_open_files  # uvicorn's, with limits

    allow_open_files(settings.max_connections)
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=args.workers,
        log_level=settings.log_level,
        http=LimitedHttpProtocol,
        timeout_keep_alive=settings.keep_alive_seconds,
        timeout_worker_healthcheck=settings.worker_healthcheck_seconds,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
