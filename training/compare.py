"""ar against latent against honest baselines, on the same data and split: one fold of the backtest.

``compare`` is one view of the backtest's machinery (``training.backtest``,
whose report is the verdict): one test span, one training run per mode or
the registered versions, judged by the same ``training.verdicts.judge``.
It trains (or loads) both modes, rolls every method over the test
span of every ticker without refitting, scores them per ticker and pooled
(each model moved by its conformal offsets, as it would serve),
times the cost of one more forecast against history length, and writes
``report.json``, ``report.md`` and PNG plots to one folder.

Its verdicts rest on Diebold-Mariano tests (``training.significance``), on
per-day losses pooled over tickers as the backtest pools them: each model's
point forecast against the random walk's on the absolute error, and the
latent model's quantiles against ar's, GARCH(1,1)-t's, RiskMetrics-t's and
the random walk's on the pinball loss, at horizon 1 and H, Holm-adjusted
across the report; beside them, per horizon, the model confidence set.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from data.features import Scaler, build_series
from latentcast.errors import ConfigError
from models.checkpoint import build_from_checkpoint, checkpoint_offsets
from models.config import MODES, ModelConfig
from models.forecaster import Forecaster
from models.predictor import Predictor
from training.baselines import BASELINES
from training.config import TrainConfig
from training.conformal import fit_offsets
from training.costs import Cost, forecast_costs
from training.dataset import TrainingData, first_unseen_day
from training.evaluate import SpanForecasts, model_forecasts
from training.har import har_range, series_ranges
from training.pipeline import fit, training_summary
from training.registry import Registry
from training.report import LABELS, write_json_report, write_markdown, write_plots
from training.scoring import outer_band, score_by_ticker
from training.significance import SIGNIFICANCE, Loss
from training.verdicts import MCS_SIZE, judge

logger = logging.getLogger(__name__)

# (loss, a, b): each tested at horizon 1 and H; a negative statistic favours a
TESTS: tuple[tuple[Loss, str, str], ...] = (
    ("absolute_error", "latent", "random_walk"),
    ("absolute_error", "ar", "random_walk"),
    ("pinball", "latent", "ar"),
    ("pinball", "latent", "garch_t"),
    ("pinball", "latent", "riskmetrics_t"),
    ("pinball", "latent", "random_walk"),
)
VIEW = (
    "one fold of the backtest's machinery: one test span, one training run per mode (or the registered "
    "versions), the same tests; the verdict on ar against latent is `latentcast backtest`'s"
)


@dataclass
class Contender:
    """A model in the comparison: trained here or loaded from the registry, with its (H, Q) conformal offsets."""

    mode: str
    model: Forecaster
    scaler: Scaler
    version: str | None
    training: dict[str, Any]
    offsets: np.ndarray


@dataclass
class Comparison:
    """Everything the report shows."""

    created: str
    data: dict[str, Any]
    levels: list[float]
    horizon: int
    contenders: dict[str, dict[str, Any]]
    spans: dict[str, list[SpanForecasts]]  # method -> per-ticker forecasts
    metrics: dict[str, dict[str, dict[str, dict[str, float | None]]]]  # method -> ticker -> h -> metric
    costs: list[Cost]
    tests: list[dict[str, Any]]  # Diebold-Mariano results, Holm-adjusted, as ``significance`` gives them
    confidence_sets: list[dict[str, Any]]  # per horizon, the model confidence set

    def to_json(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "data": self.data,
            "horizon": self.horizon,
            "quantiles": self.levels,
            "protocol": (
                "rolling forecasts over the test span, one per day after its close, no refitting; "
                "model state warmed on train+validation; baselines fit on train+validation"
            ),
            "models": self.contenders,
            "metrics": self.metrics,
            "view": VIEW,
            "diebold_mariano": self.tests,
            "confidence_sets": self.confidence_sets,
            "significance_level": SIGNIFICANCE,
            "mcs_size": MCS_SIZE,
            "cost_per_forecast_us": [asdict(c) for c in self.costs],
            "machine": {
                "cores": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "python": platform.python_version(),
                "torch": torch.__version__,
            },
        }


def train_contenders(
    data: TrainingData, model_config: ModelConfig, train_config: TrainConfig, modes: Sequence[str] = MODES
) -> list[Contender]:
    """``modes`` trained on the same data, split and seed; offsets fit on the validation span, as a checkpoint's."""
    out = []
    for mode in modes:
        config = ModelConfig.from_dict({**model_config.to_dict(), "mode": mode})
        trained = fit(config, data, train_config)
        offsets = fit_offsets(trained.model, data.scaler, data.series, data.split)
        summary = training_summary(trained.result, train_config)
        out.append(Contender(mode, trained.model, data.scaler, None, summary, offsets))
    return out


def load_contender(registry: Registry, version: str) -> Contender:
    """A registered version, scored with its own scaler and conformal offsets on this comparison's data."""
    checkpoint = registry.load(version)
    model, scaler = build_from_checkpoint(checkpoint, version)
    meta = registry.get(version)
    training = {"val_loss": meta.metrics.get("val_loss"), "data_span": meta.data_span}
    offsets = checkpoint_offsets(checkpoint, model.config, version)
    return Contender(model.config.mode, model, scaler, version, training, offsets)


def check_out_of_sample(contender: Contender, test_start: np.datetime64) -> None:
    """``ConfigError`` if a loaded version read prices of the test span in training or validation."""
    if contender.version is None:
        return  # trained here, on this comparison's split
    unseen = first_unseen_day(contender.training["data_span"])
    if unseen > test_start:
        seen = np.datetime_as_string(unseen - np.timedelta64(1, "D"), unit="D")
        start = np.datetime_as_string(test_start, unit="D")
        raise ConfigError(
            f"version {contender.version} read prices up to {seen} in training or validation, "
            f"inside the test span from {start}: it would be scored in sample; "
            "compare on data whose test span starts later, or train it on older data"
        )


def baseline_spans(
    data: TrainingData, levels: np.ndarray, ranges: Sequence[np.ndarray | None] | None = None
) -> dict[str, list[SpanForecasts]]:
    """Each baseline's forecasts over each ticker's test span, fit on the training and validation spans.

    The models learn from both (validation picks their weights, and their state
    is warmed through it): the baselines are fit on as much. ``ranges``: each
    series' log(high / low) (``training.har.series_ranges``); where every
    series has one, HAR-range (``har_range``) is among the baselines.
    """
    with_har = ranges is not None and all(x is not None for x in ranges)
    out: dict[str, list[SpanForecasts]] = {name: [] for name in [*BASELINES, *(["har_range"] if with_har else [])]}
    for i, series in enumerate(data.series):
        _, test = data.split.bounds(series)
        returns = series.features[:, 0]
        origins = np.arange(test, len(series))
        forecasts = [baseline(returns, test, origins, data.horizon, levels) for baseline in BASELINES.values()]
        if with_har:
            assert ranges is not None
            forecasts.append(har_range(returns, test, origins, data.horizon, levels, ranges[i]))
        for name, forecast in zip(out, forecasts, strict=True):
            out[name].append(
                SpanForecasts(
                    series.ticker,
                    series.dates[origins],
                    series.close[origins],
                    series.targets[origins],
                    forecast.point,
                    forecast.quantiles,
                )
            )
    return out


def significance(
    spans: dict[str, list[SpanForecasts]], levels: dict[str, Sequence[float]], horizons: Sequence[int]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The tests of ``TESTS`` present in ``spans`` (Holm-adjusted across them) and each horizon's confidence set.

    ``levels``: each method's quantile levels (its pinball loss is taken at its
    own); losses are per day, averaged over the tickers forecast that day.
    """
    pairs = [(loss, a, b) for loss, a, b in TESTS if a in spans and b in spans]
    return judge({m: [s] for m, s in spans.items()}, levels, horizons, pairs, lambda m: LABELS.get(m, m))


def compare(
    data: TrainingData,
    contenders: list[Contender],
    source: str,
    prices: pd.DataFrame,
    cost_lengths: tuple[int, ...],
) -> Comparison:
    """Score every contender and baseline on the test span of ``data``.

    Each contender is scored at its own quantile levels (coverage of its own
    outer band); the baselines at the levels of the latent contender (else the
    first). A loaded version that read the test span is refused.
    """
    for c in contenders:
        check_out_of_sample(c, data.split.test_start)
    reference = next((c for c in contenders if c.mode == "latent"), contenders[0])
    levels = list(reference.model.config.quantiles)
    spans: dict[str, list[SpanForecasts]] = {}
    described: dict[str, dict[str, Any]] = {}
    metrics: dict[str, dict[str, dict[str, dict[str, float | None]]]] = {}
    for c in contenders:
        series = build_series(prices, c.scaler.features, data.horizon) if c.version else data.series
        starts = [data.split.bounds(s)[1] for s in series]
        spans[c.mode] = model_forecasts(c.model, c.scaler, series, starts, c.offsets)
        own = list(c.model.config.quantiles)
        metrics[c.mode] = score_by_ticker(spans[c.mode], own)
        described[c.mode] = {
            "version": c.version,
            "config": c.model.config.to_dict(),
            "training": c.training,
            "quantiles": own,
            "coverage_band": list(outer_band(own)),
            "offsets": c.offsets.tolist(),
        }
    own_levels: dict[str, Sequence[float]] = {mode: d["quantiles"] for mode, d in described.items()}
    for name, forecasts in baseline_spans(data, np.asarray(levels), series_ranges(prices, data.series)).items():
        spans[name] = forecasts
        metrics[name] = score_by_ticker(forecasts, levels)
        own_levels[name] = levels
    tests, sets = significance(spans, own_levels, sorted({1, data.horizon}))
    by_mode = {c.mode: Predictor(c.model, c.scaler) for c in contenders}
    longest = max(data.series, key=len).ticker
    costs = forecast_costs(by_mode["latent"], by_mode["ar"], prices[prices["ticker"] == longest], cost_lengths)
    return Comparison(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        data=data.span(source),
        levels=levels,
        horizon=data.horizon,
        contenders=described,
        spans=spans,
        metrics=metrics,
        costs=costs,
        tests=tests,
        confidence_sets=sets,
    )


def write_report(comparison: Comparison, out: Path, plot_ticker: str | None = None) -> list[Path]:
    """``report.json``, ``report.md`` and the PNG plots in ``out``; returns the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    payload = comparison.to_json()
    json_path = write_json_report(payload, out / "report.json")
    plots = write_plots(comparison.spans, comparison.costs, out, plot_ticker)
    md_path = write_markdown(payload, plots, out)
    return [json_path, md_path, *plots]
