"""The commands that train and score models: train, evaluate, compare, calibration, backtest."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

from data.feature_cache import FeatureSpec, artifacts_cache
from data.universe import load_series
from latentcast.errors import ConfigError
from models.config import MODES
from service.cli.arguments import load_prices, model_config, train_config
from training import distributed
from training.backtest import BacktestConfig, run_backtest, search_span
from training.backtest_report import write_report as write_backtest
from training.calibration import CalibrationConfig, calibration_report, rescaled_prices, write_calibration_report
from training.compare import compare, load_contender, train_contenders, write_report
from training.config import TrainConfig
from training.dataset import TrainingData
from training.pipeline import train_and_register_in
from training.ray_trials import ray_session
from training.registry import Registry
from training.scoring import score_version
from training.search import Search, SearchConfig
from training.search import search as run_search


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
    spec = FeatureSpec(tuple(args.features.split(",")), args.horizon, args.start, args.end)
    series = load_series(args.source, spec, artifacts_cache(args.artifacts), tickers=args.tickers, path=args.path)
    config = train_config(args)
    if not world.main:  # one progress bar, the main process's
        config = TrainConfig.from_dict({**config.to_dict(), "progress": False})
    for mode in modes:
        data = TrainingData.from_series(series, spec.names, spec.horizon)
        version = train_and_register_in(
            world, registry, data, args.source, model_config(args, mode), config, promote=args.promote
        )
        if version is not None:
            champion = " (champion)" if registry.champion(mode) == version.version else ""
            print(f"{version.version}{champion}: val loss {version.metrics['val_loss']:.4f}")
    return 0


def version_named(registry: Registry, name: str, mode: str | None = None) -> str:
    """``name`` itself, or the champion of the mode it names; ``ConfigError`` for a mode without one, or for
    another mode than ``mode`` when one is given."""
    if name not in MODES:
        return name
    if mode is not None and name != mode:
        raise ConfigError(f"--{mode}-version {name!r} names the other mode: give {mode!r} or a version of {mode}")
    champion = registry.champion(name)
    if champion is None:
        raise ConfigError(f"no {name} champion in {registry.root}")
    return champion


def report_folder(args: argparse.Namespace, report: str) -> Path:
    """Where a report command writes: ``--out``, else a folder of the registry's (never a committed one)."""
    return Path(args.out) if args.out is not None else Path(args.artifacts) / "reports" / report


def run_evaluate(args: argparse.Namespace) -> int:
    registry = Registry(args.artifacts)
    version = version_named(registry, args.version)
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
    config = replace(train_config(args), epoch_steps=args.epoch_steps or None)
    trained = {c.mode: c for c in train_contenders(data, model_config(args, "latent"), config, to_train)}
    contenders = [
        trained[m] if m in trained else load_contender(registry, version_named(registry, str(given[m]), m))
        for m in MODES
    ]
    comparison = compare(data, contenders, args.source, prices, tuple(args.cost_lengths))
    for path in write_report(comparison, report_folder(args, "compare"), args.plot_ticker):
        print(path)
    return 0


def run_calibration(args: argparse.Namespace) -> int:
    prices = load_prices(args)
    features = tuple(args.features.split(","))
    config = CalibrationConfig(scales=tuple(args.scales))
    report = calibration_report(prices, model_config(args, "latent"), train_config(args), features, config, args.source)
    command = "latentcast " + " ".join(sys.argv[1:]) if sys.argv[1:] else "latentcast calibration"
    for path in write_calibration_report(report, report_folder(args, "calibration"), command):
        print(path)
    return 0


def run_backtest_command(args: argparse.Namespace) -> int:
    config = BacktestConfig(
        folds=args.folds,
        test_days=args.test_days,
        validation_days=args.validation_days,
        seeds=tuple(args.seeds),
        scalings=tuple(args.other_scalings),
        epoch_steps=args.epoch_steps or None,
        closes_only=args.closes_only,
    )
    features = tuple(args.features.split(","))
    prices, source = load_prices(args), args.source
    if args.rescale != 1.0:
        prices, source = rescaled_prices(prices, args.rescale), f"{source} (returns x{args.rescale:g})"
    model, train = model_config(args, "latent"), train_config(args)
    out = report_folder(args, "backtest")
    with ray_session(args.ray_address):  # one connection for the search and the folds; a missing Ray is told here
        search = None
        if args.search is not None:
            search = Search.read(args.search)
        elif args.search_trials:
            validation_start, test_start = search_span(prices, config)
            budget = replace(train, epoch_steps=config.epoch_steps)
            searched = SearchConfig(trials=args.search_trials, seed=args.seed)
            search = run_search(
                prices, features, model, budget, validation_start, test_start, searched, args.jobs, args.ray_address
            )
            print(search.write(out / "search.json"))
        result = run_backtest(
            prices, features, model, train, config, source, jobs=args.jobs, search=search, ray_address=args.ray_address
        )
    for path in write_backtest(result, out):
        print(path)
    for test in result.tests:
        print(f"horizon {test['horizon']}: {test['verdict']}")
    for mcs in result.confidence_sets:
        print(f"horizon {mcs['horizon']}: model confidence set {', '.join(mcs['included'])}")
    for failure in result.failures:
        print(f"failed: fold {failure['fold']}, {failure['method']}, seed {failure['seed']}: {failure['error']}")
    return 0
