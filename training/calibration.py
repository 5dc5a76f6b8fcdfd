"""The calibration report: are the 10-90% bands right, on assets like and unlike the training ones?

``calibration_report`` trains the latent model twice on the same data, split
and seed, once with global scaling and once with volatility scaling, fits
each one's split-conformal offsets on the validation span, and scores them
(per ticker, at horizons 1 and H) against GARCH(1,1)-t on the test span of
the prices, and of copies whose log returns are multiplied by k (0.3 for an
index-like asset, 3 for a crisis-like one; prices rebuilt from them). The
models are not retrained on a copy: that is the point. GARCH is fit on each
copy's own training span, as a user would fit it on a new asset. The
volatility-scaled model is also scored with adaptive offsets, as a session
opened on each ticker at the start of the test span would have them
(``training.conformal.adaptive_forecasts``), and a Diebold-Mariano test
compares its daily pinball loss with GARCH's.
``write_calibration_report`` writes ``calibration.md``, ``calibration.json``
and a coverage plot.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

from data.files import write_whole

matplotlib.use("Agg")  # files only: no display on servers and in CI

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from data.features import build_series
from latentcast.errors import ConfigError
from models.calibration import AdaptiveConfig
from models.config import ModelConfig
from training.baselines import garch_t
from training.config import TrainConfig
from training.conformal import adaptive_forecasts, fit_offsets, fit_young_offsets
from training.dataset import TrainingData
from training.evaluate import SpanForecasts, model_forecasts
from training.pipeline import fit
from training.scoring import score_by_ticker
from training.session_age import AgeConfig, against_plain_ewma, age_plot, age_scores, age_section, session_spans
from training.significance import DieboldMariano, compare_losses

METHODS = {
    "global": "global scaling",
    "global_conformal": "global scaling + conformal",
    "volatility": "volatility scaling",
    "volatility_conformal": "volatility scaling + conformal",
    "volatility_adaptive": "volatility scaling + conformal + adaptive",
    "garch_t": "GARCH(1,1)-t",
}
TESTED = ("volatility_conformal", "volatility_adaptive")  # each tested against GARCH(1,1)-t
GOAL = (0.78, 0.82)  # coverage called calibrated
AGE_GOAL = (0.75, 0.85)  # coverage of each age bucket of young sessions called calibrated


@dataclass(frozen=True)
class CalibrationConfig:
    """What the report scores: return multipliers (1 is the prices as they are), the sessions' adaptive rate."""

    scales: tuple[float, ...] = (1.0, 0.3, 3.0)
    adaptive_rate: float = AdaptiveConfig().rate
    adaptive_first_rate: float = AdaptiveConfig().first_rate
    age: AgeConfig = field(default_factory=AgeConfig)


def rescaled_prices(prices: pd.DataFrame, k: float) -> pd.DataFrame:
    """A copy of a tidy price frame whose daily log returns are multiplied by ``k``.

    Closes are rebuilt from the first close of each ticker; open, high and low
    keep their log distance from the close, multiplied by ``k`` too; volume is
    unchanged.
    """
    if not k > 0:
        raise ConfigError(f"a return multiplier must be positive, got {k}")
    out = []
    for _, rows in prices.groupby("ticker", sort=True):
        rows = rows.copy()
        close = rows["close"].to_numpy(np.float64)
        log_close = np.log(close[0]) + k * (np.log(close) - np.log(close[0]))
        new_close = np.exp(log_close)
        for name in ("open", "high", "low"):
            rows[name] = new_close * np.exp(k * np.log(rows[name].to_numpy(np.float64) / close))
        rows["close"] = new_close
        rows["adj_close"] = new_close
        out.append(rows)
    return pd.concat(out, ignore_index=True)


def garch_spans(data: TrainingData, levels: Sequence[float]) -> list[SpanForecasts]:
    """GARCH(1,1)-t over each ticker's test span, fit on its training span."""
    out = []
    for s in data.series:
        valid, test = data.split.bounds(s)
        origins = np.arange(test, len(s))
        forecast = garch_t(s.features[:, 0], valid, origins, data.horizon, np.asarray(levels))
        out.append(
            SpanForecasts(
                s.ticker, s.dates[origins], s.close[origins], s.targets[origins], forecast.point, forecast.quantiles
            )
        )
    return out


def calibration_report(
    prices: pd.DataFrame,
    model_config: ModelConfig,
    train_config: TrainConfig,
    features: Sequence[str],
    config: CalibrationConfig | None = None,
    source: str = "bundled",
) -> dict[str, Any]:
    """Scores by return multiplier, method, ticker (and "pooled") and horizon (JSON-ready)."""
    config = config or CalibrationConfig()
    data = TrainingData.prepare(prices, features, model_config.horizon)
    models, offsets, training = {}, {}, {}
    young = None
    for scaling in ("global", "volatility"):
        trained = fit(ModelConfig.from_dict({**model_config.to_dict(), "scaling": scaling}), data, train_config)
        models[scaling] = trained.model
        offsets[scaling] = fit_offsets(trained.model, data.scaler, data.series, data.split)
        if scaling == "volatility":
            young = fit_young_offsets(trained.model, data.scaler, data.series, data.split)
        training[scaling] = {"val_loss": trained.result.best_val_loss, "epochs_run": trained.result.epochs_run}
    levels = list(model_config.quantiles)
    scores: dict[str, Any] = {}
    tests: dict[str, Any] = {}
    by_age: dict[str, Any] = {}
    before: dict[str, Any] = {}
    for k in config.scales:
        series = build_series(rescaled_prices(prices, k), data.features, data.horizon)
        copy = TrainingData(series, data.split, data.scaler, data.horizon)
        starts = [data.split.bounds(s)[1] for s in series]
        spans = {"garch_t": garch_spans(copy, levels)}
        for scaling, model in models.items():
            spans[scaling] = model_forecasts(model, data.scaler, series, starts)
            spans[f"{scaling}_conformal"] = model_forecasts(model, data.scaler, series, starts, offsets[scaling])
        spans["volatility_adaptive"] = [
            adaptive_forecasts(span, offsets["volatility"], levels, config.adaptive_rate, config.adaptive_first_rate)
            for span in spans["volatility"]
        ]
        scores[f"{k:g}"] = {method: score_by_ticker(spans[method], levels) for method in METHODS}
        sessions = session_spans(
            models["volatility"], data.scaler, series, starts, offsets["volatility"], config.age, young
        )
        by_age[f"{k:g}"] = age_scores(sessions, levels, list(dict.fromkeys((1, data.horizon))), config.age)
        if k == 1:
            volatility = ModelConfig.from_dict({**model_config.to_dict(), "scaling": "volatility"})
            horizons = list(dict.fromkeys((1, data.horizon)))
            before = against_plain_ewma(data, volatility, train_config, spans["volatility_conformal"], horizons)
        tests[f"{k:g}"] = {
            method: {
                f"h{h}": compare_losses([spans[method]], [spans["garch_t"]], levels, h).to_dict()
                for h in dict.fromkeys((1, data.horizon))
            }
            for method in TESTED
        }
    return {
        "data": data.span(source),
        "horizon": data.horizon,
        "quantiles": levels,
        "model": model_config.to_dict(),
        "train": train_config.to_dict(),
        "training": training,
        "offsets": {scaling: o.tolist() for scaling, o in offsets.items()},
        "adaptive_rate": config.adaptive_rate,
        "adaptive_first_rate": config.adaptive_first_rate,
        "scores": scores,
        "against_garch": tests,
        "by_age": by_age,
        "against_plain_ewma": before,
        "young_offsets": None if young is None else young.to_dict(),
        "age": {"every": config.age.every, "history": config.age.history},
    }


def _within(value: float | None) -> str:
    if value is None:
        return "n/a"
    mark = "" if within_goal(value) else " ✗"
    return f"{value * 100:.1f}{mark}"


def within_goal(coverage: float) -> bool:
    """Whether a coverage, as the report shows it (in %, to one decimal), is within the goal."""
    return GOAL[0] * 100 <= round(coverage * 100, 1) <= GOAL[1] * 100


def _tables(scores: dict[str, Any], horizon: str, tests: dict[str, Any]) -> list[str]:
    tickers = list(next(iter(scores.values())))
    header = "| method | " + " | ".join(tickers) + " |"
    rule = "|---" * (len(tickers) + 1) + "|"
    lines = [f"Coverage of the 10-90% band (%, goal {GOAL[0] * 100:.0f}-{GOAL[1] * 100:.0f}; ✗ outside):", ""]
    lines += [header, rule]
    for method, label in METHODS.items():
        lines.append(
            f"| {label} | " + " | ".join(_within(scores[method][t][horizon]["coverage"]) for t in tickers) + " |"
        )
    garch = scores["garch_t"]["pooled"][horizon]["pinball"]
    lines += [
        "",
        "Pinball loss (% of log return, lower is better; the last column is the pooled loss over GARCH(1,1)-t's, "
        "below 1 beats it), then Diebold-Mariano tests of the daily loss (mean over tickers) against GARCH(1,1)-t's:",
        "",
        header[:-1] + "| / GARCH's |",
        rule + "---|",
    ]
    for method, label in METHODS.items():
        cells = [f"{scores[method][t][horizon]['pinball'] * 100:.4f}" for t in tickers]
        ratio = scores[method]["pooled"][horizon]["pinball"] / garch
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {ratio:.3f} |")
    lines.append("")
    for method in TESTED:
        result = DieboldMariano(**tests[method][horizon])
        lines.append(
            f"- {METHODS[method]}: statistic {result.statistic:.3f} over {result.n} days; "
            f"{result.verdict(METHODS[method], METHODS['garch_t'])}."
        )
    return [*lines, ""]


def summary(report: dict[str, Any]) -> list[str]:
    """One row per method: bands within the goal, the worst miss, pooled pinball over GARCH's on the prices."""
    last = f"h{report['horizon']}"
    horizons = list(dict.fromkeys(("h1", last)))
    prices = next((k for k in report["scores"] if float(k) == 1), None)
    lines = [
        "| method | bands within the goal | worst coverage miss (points) | "
        + " | ".join(f"pooled pinball / GARCH's, h{h[1:]}" for h in horizons)
        + " |",
        "|---" * (3 + len(horizons)) + "|",
    ]
    for method, label in METHODS.items():
        cells = [
            by_ticker[t][h]["coverage"]
            for by_method in report["scores"].values()
            for t, by_ticker in [(t, by_method[method]) for t in by_method[method] if t != "pooled"]
            for h in horizons
        ]
        within = sum(within_goal(c) for c in cells)
        worst = max(abs(c - sum(GOAL) / 2) for c in cells) * 100
        ratios = ["n/a"] * len(horizons)
        if prices is not None:
            scores = report["scores"][prices]
            garch = [scores["garch_t"]["pooled"][h]["pinball"] for h in horizons]
            ratios = [f"{scores[method]['pooled'][h]['pinball'] / g:.3f}" for h, g in zip(horizons, garch, strict=True)]
            if method in TESTED:
                tests = report["against_garch"][prices][method]
                ratios = [f"{r} (p = {tests[h]['p_value']:.2f})" for r, h in zip(ratios, horizons, strict=True)]
        lines.append(f"| {label} | {within} of {len(cells)} | {worst:.1f} | " + " | ".join(ratios) + " |")
    return lines


def write_calibration_report(report: dict[str, Any], out: Path, command: str) -> list[Path]:
    """``calibration.md``, ``calibration.json`` and ``calibration_coverage.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "calibration.json"
    write_whole(json_path, json.dumps(report, indent=2, allow_nan=False) + "\n")
    plot = _coverage_plot(report, out / "calibration_coverage.png")
    age = AgeConfig(**report["age"])
    by_age = age_plot(report["by_age"], age, AGE_GOAL, out / "calibration_age.png")
    data, last = report["data"], f"h{report['horizon']}"
    lines = [
        "# Calibration: global scaling, volatility scaling, conformal offsets",
        "",
        f"Made by `{command}`. Latent models trained on {data['source']} prices of {', '.join(data['tickers'])} "
        f"({data['first']} to {data['last']}), features {', '.join(data['features'])}; training before "
        f"{data['validation_start']}, validation (where conformal offsets are fit) before {data['test_start']}, "
        f"scored on the test span from {data['test_start']}: rolling forecasts, one per day, the state warmed on "
        "everything before. The copies multiply every log return by k and rebuild the prices: the models are "
        "not retrained on them; GARCH(1,1)-t is fit on each copy's own training span.",
        "",
        "Offsets are measured in half-widths of the forecast's own 10-90% band, per horizon and quantile "
        "(`models/calibration.py`); volatility scaling divides each return by the stream's EWMA volatility, "
        'carried in its state (`models/volatility.py`). "+ adaptive" adds the offsets a session opened with '
        f'`"calibration": "adaptive"` at the start of the test span would have learnt by each day (rate '
        f"{report['adaptive_rate']} / h half-widths per outcome at horizon h, {report['adaptive_first_rate']} / (n h) "
        "for the n-th outcome while that is larger, `training/conformal.py`).",
        "",
        "## Summary",
        "",
        f"Per ticker, horizon and return multiplier ({', '.join(report['scores'])}): how many 10-90% bands cover "
        f"{GOAL[0] * 100:.0f}-{GOAL[1] * 100:.0f}% of the outcomes, the furthest from 80%, and the pooled pinball "
        "loss over GARCH(1,1)-t's on the prices as they are (below 1 beats it; p: the Diebold-Mariano test of "
        "the difference, called only below 0.05).",
        "",
        *summary(report),
        "",
        f"![coverage]({plot.name})",
        "",
    ]
    for k, scores in report["scores"].items():
        what = "the prices as they are" if float(k) == 1 else f"log returns multiplied by {k}"
        for horizon in dict.fromkeys(("h1", last)):
            tests = report["against_garch"][k]
            lines += [f"## {what}, horizon {horizon[1:]}", "", *_tables(scores, horizon, tests)]
    lines += age_section(report, age, AGE_GOAL, by_age.name)
    lines += ["## Conformal offsets (half-widths, per horizon and quantile)", ""]
    for scaling, offsets in report["offsets"].items():
        lines.append(
            f"- {scaling}: " + "; ".join(f"h{h + 1} {[round(v, 3) for v in row]}" for h, row in enumerate(offsets))
        )
    md_path = out / "calibration.md"
    write_whole(md_path, "\n".join(lines) + "\n")
    return [md_path, json_path, plot, by_age]


def _coverage_plot(report: dict[str, Any], path: Path) -> Path:
    scales = list(report["scores"])
    horizons = list(dict.fromkeys(("h1", f"h{report['horizon']}")))
    fig, axes = plt.subplots(
        len(horizons), len(scales), figsize=(4.5 * len(scales), 3.6 * len(horizons)), squeeze=False
    )
    for row, horizon in enumerate(horizons):
        for col, k in enumerate(scales):
            ax, scores = axes[row][col], report["scores"][k]
            tickers = list(next(iter(scores.values())))
            width = 0.8 / len(METHODS)
            for i, (method, label) in enumerate(METHODS.items()):
                values = [scores[method][t][horizon]["coverage"] * 100 for t in tickers]
                ax.bar(np.arange(len(tickers)) + i * width, values, width, label=label)
            ax.axhspan(GOAL[0] * 100, GOAL[1] * 100, color="grey", alpha=0.3)
            ax.set_xticks(np.arange(len(tickers)) + 0.4 - width / 2, tickers, fontsize=8)
            ax.set_ylim(50, 100)
            ax.set_title(f"returns x{k}, horizon {horizon[1:]}", fontsize=9)
            ax.set_ylabel("10-90% coverage (%)")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
