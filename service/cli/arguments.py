"""The arguments several commands share, and the prices and configs they read into."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from data import sources
from data.features import DEFAULT_FEATURES
from latentcast.errors import ConfigError
from models.config import CELLS, DEFAULT_SCALING, QUANTILE_SCALES, SCALINGS, VARIANCE_SOURCES, ModelConfig
from service.config import get_settings
from service.model_pool import ModelBounds
from training import distributed
from training.config import TrainConfig


def iso_date(text: str) -> str:
    """An argument that must be a date, YYYY-MM-DD; argparse names the option when it is not."""
    try:
        date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date, YYYY-MM-DD") from None
    return text


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless it has none (None, a flag's False) or says it itself."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if default is None or default is False or default == argparse.SUPPRESS:
            return text
        if "default" in text or not action.option_strings:
            return text
        shown = " ".join(str(d) for d in default) if isinstance(default, list | tuple) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help shows defaults; its subcommands' parsers are of this class too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", choices=sources.SOURCES, default="bundled", help="where prices come from")
    parser.add_argument(
        "--path", help="file or folder of prices (sources csv and parquet; default: none, needed by them)"
    )
    parser.add_argument("--tickers", nargs="+", help="only these tickers (default: every ticker of the source)")
    parser.add_argument("--start", help="first date, YYYY-MM-DD (default: the source's first)")
    parser.add_argument("--end", help="end date (exclusive), YYYY-MM-DD (default: after the source's last)")


def add_process_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="data-parallel training processes on this host (under torchrun: leave at 1, torchrun starts them)",
    )
    parser.add_argument(
        "--device", choices=distributed.DEVICES, default="cpu", help="where to train (auto: cuda when present)"
    )


def add_artifacts_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--artifacts", type=Path, help="registry folder (default: LATENTCAST_ARTIFACTS, else ./artifacts)"
    )


def add_model_arguments(parser: argparse.ArgumentParser, epochs: int | None = TrainConfig.epochs) -> None:
    model, train = ModelConfig(), TrainConfig()
    parser.add_argument("--features", default=",".join(DEFAULT_FEATURES), help="comma list of returns,range,volume")
    parser.add_argument("--cell", choices=CELLS, default=model.cell, help="the recurrent core's cell")
    parser.add_argument("--hidden", type=int, default=model.hidden_size, help="hidden units of the recurrent core")
    parser.add_argument("--layers", type=int, default=model.num_layers, help="stacked recurrent layers")
    parser.add_argument("--window", type=int, default=model.window, help="ar mode's window")
    parser.add_argument("--horizon", type=int, default=model.horizon, help="days ahead forecast, 1 to this")
    parser.add_argument(
        "--scaling",
        choices=SCALINGS,
        default=DEFAULT_SCALING,
        help="returns over the training std (global) or over each stream's own EWMA volatility (volatility)",
    )
    parser.add_argument(
        "--variance-source",
        choices=VARIANCE_SOURCES,
        default=model.variance_source,
        help="what a volatility-scaled stream's variance reads: squared returns, the range (Parkinson; needs "
        "--features returns,range,...), or the range on days sent with a high and low, else the squared return",
    )
    parser.add_argument(
        "--variance-scales",
        default="",
        help="comma list of decays of further EWMA variances, carried in the state and read as inputs, "
        "e.g. 0.5,0.8,0.955 (about a day, a week, a month; needs volatility scaling; default: none)",
    )
    parser.add_argument(
        "--quantile-scale",
        choices=QUANTILE_SCALES,
        default=model.quantile_scale,
        help="the volatility the quantiles are learnt in units of: the main variance's, or a learnt mix of it and "
        "the --variance-scales'",
    )
    parser.add_argument(
        "--quantiles", default=",".join(str(q) for q in model.quantiles), help="comma list of quantile levels"
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=epochs,
        help="most passes over the training rows; early stopping may end sooner"
        + ("" if epochs is not None else " (default: LATENTCAST_RETRAIN_EPOCHS)"),
    )
    parser.add_argument("--seed", type=int, default=train.seed, help="seed of the weights' draw and the batches")
    parser.add_argument(
        "--threads",
        type=int,
        default=train.threads,
        help="torch threads (default: the cores this process may use that are not busy when training starts)",
    )
    parser.add_argument(
        "--pretrain-paths",
        type=int,
        default=train.pretrain_paths,
        help="first train on this many synthetic paths (GARCH-t, regime switches, stochastic volatility, jumps) "
        "for --pretrain-steps optimiser steps, then on the prices (0: no pretraining; a backtest also trains "
        "each mode without and tests the two)",
    )
    parser.add_argument(
        "--pretrain-steps", type=int, default=train.pretrain_steps, help="optimiser steps on the synthetic paths"
    )
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
    try:
        scales = tuple(float(d) for d in args.variance_scales.split(",") if d.strip())
    except ValueError as exc:
        raise ConfigError(f"--variance-scales must be a comma list of decays, got {args.variance_scales!r}") from exc
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
        variance_source=args.variance_source,
        variance_scales=scales,
        quantile_scale=args.quantile_scale,
    )
    # refused before training, not after: the service would not load it
    settings = get_settings()
    problem = ModelBounds(settings.max_horizon, settings.max_quantiles).problem(config.horizon, len(config.quantiles))
    if problem is not None:
        raise ConfigError(f"{problem}: the service would refuse this model")
    return config


def train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        epochs=args.epochs,
        seed=args.seed,
        threads=args.threads,
        progress=not args.no_progress,
        pretrain_paths=args.pretrain_paths,
        pretrain_steps=args.pretrain_steps,
    )
