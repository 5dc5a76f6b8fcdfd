"""The comparison report as people read it: Markdown tables, a verdict, plots.

The verdict is written from the figures and the Diebold-Mariano tests: a
difference is called only where the test finds it significant, so a rerun on
other data says what that data shows, including that the random walk wins or
ties when it does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI

import matplotlib.pyplot as plt
import numpy as np

from data.files import write_whole
from training.costs import Cost
from training.evaluate import SpanForecasts

LABELS = {
    "latent": "latent (model)",
    "ar": "ar (model)",
    "random_walk": "random walk, 20-day vol",
    "previous_return": "previous return",
    "linear_ar": "linear AR(5)",
    "garch_t": "GARCH(1,1)-t",
    "riskmetrics_normal": "RiskMetrics, normal",
    "riskmetrics_t": "RiskMetrics, t",
    "har_range": "HAR-range, t",
}
COLUMNS = [
    ("mae", "MAE (%)", 100.0, ".3f"),
    ("rmse", "RMSE (%)", 100.0, ".3f"),
    ("mae_ratio", "MAE / RW", 1.0, ".3f"),
    ("directional_accuracy", "direction (%)", 100.0, ".1f"),
    ("pinball", "pinball (%)", 100.0, ".4f"),
    ("coverage", "outer-band coverage (%)", 100.0, ".1f"),
]
PLOT_DAYS = 120  # the last days of the test span in the forecast plot
LOSS_LABELS = {"absolute_error": "absolute error", "pinball": "pinball"}
SMALLEST_P = 1e-4  # p-values below this print as "< 0.0001": the digits beyond say nothing


def _cell(value: float | None, scale: float, fmt: str) -> str:
    return "n/a" if value is None else format(value * scale, fmt)


def metric_table(metrics: dict[str, Any], ticker: str, horizon: str) -> list[str]:
    """A Markdown table, one row per method, for one ticker (or "pooled") and horizon."""
    lines = ["| method | " + " | ".join(c[1] for c in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for method, by_ticker in metrics.items():
        row = by_ticker[ticker][horizon]
        cells = [_cell(row[key], scale, fmt) for key, _, scale, fmt in COLUMNS]
        lines.append(f"| {LABELS.get(method, method)} | " + " | ".join(cells) + " |")
    return lines


def p_value(p: float) -> str:
    return "< 0.0001" if p < SMALLEST_P else f"{p:.4f}"


def _find(tests: Sequence[dict[str, Any]], horizon: int, loss: str, a: str, b: str) -> dict[str, Any] | None:
    return next(
        (t for t in tests if (t["horizon"], t["loss"], t["a"], t["b"]) == (horizon, loss, a, b)),
        None,
    )


def _dm(test: dict[str, Any]) -> str:
    p = p_value(test["adjusted_p"])
    return f"DM statistic {test['statistic']:.3f}, Holm-adjusted p {p if p.startswith('<') else '= ' + p}"


def _point(mode: str, row: dict[str, Any], test: dict[str, Any] | None, days: str, level: float) -> str | None:
    """The point-forecast sentence of ``mode`` against the random walk, called by its DM ``test``."""
    ratio, direction = row["mae_ratio"], row["directional_accuracy"]
    if ratio is None or test is None:
        return None
    hits = "n/a" if direction is None else f"{direction * 100:.1f}%"
    if test["adjusted_p"] < level and test["mean_difference"] < 0:
        return (
            f"**Point forecast, {days} day(s): the {mode} model beats the random walk** by "
            f"{(1 - ratio) * 100:.1f}% in MAE (ratio {ratio:.3f}; {_dm(test)}); direction right {hits} of the time."
        )
    if test["adjusted_p"] < level:
        head = f"does not beat the random walk.** Its MAE is {ratio:.3f}x the random walk's, significantly higher"
    else:
        head = (
            f"ties with the random walk.** Its MAE is {ratio:.3f}x the random walk's, "
            "a difference the test does not find significant"
        )
    return (
        f"**Point forecast, {days} day(s): the {mode} model {head} ({_dm(test)}); its direction is right {hits} "
        "of the time. On daily stock returns the mean is nearly unpredictable: here the random walk is as good or "
        "better."
    )


def verdict(metrics: dict[str, Any], tests: Sequence[dict[str, Any]], horizon: str, level: float) -> list[str]:
    """Plain sentences on who wins at ``horizon`` ("h5"): a difference is called only where the
    Holm-adjusted Diebold-Mariano p-value of ``tests`` is below ``level``."""
    pooled = {method: by_ticker["pooled"][horizon] for method, by_ticker in metrics.items()}
    h, days = int(horizon[1:]), horizon[1:]
    out = []
    for mode in ("latent", "ar"):
        if mode in pooled:
            line = _point(mode, pooled[mode], _find(tests, h, "absolute_error", mode, "random_walk"), days, level)
            out += [line] if line else []
    interval = {m: v for m, v in pooled.items() if v["pinball"] is not None}
    ranked = sorted(interval, key=lambda m: interval[m]["pinball"])
    figures = ", ".join(
        f"{LABELS.get(m, m)} {interval[m]['pinball'] * 100:.4f} (coverage {interval[m]['coverage'] * 100:.1f}%)"
        for m in ranked
    )
    out.append(
        f"**Quantiles, {days} day(s):** pinball loss (%, lower is better) and coverage of the outer quantile band: "
        f"{figures}. Which of these differences are real, the tests say:"
    )
    for other in ("ar", "garch_t", "riskmetrics_t", "random_walk"):
        test = _find(tests, h, "pinball", "latent", other)
        if test is not None:
            out.append(f"Pinball loss, {days} day(s): {test['verdict']}; DM statistic {test['statistic']:.3f}.")
    return out


def test_table(tests: Sequence[dict[str, Any]]) -> list[str]:
    """The Diebold-Mariano tests as a Markdown table, one row per test."""
    lines = [
        "| horizon | loss | a | b | DM statistic | p-value | Holm-adjusted | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in tests:
        lines.append(
            f"| {t['horizon']} | {LOSS_LABELS[t['loss']]} | {LABELS.get(t['a'], t['a'])} "
            f"| {LABELS.get(t['b'], t['b'])} | {t['statistic']:.3f} | {p_value(t['p_value'])} "
            f"| {p_value(t['adjusted_p'])} | {t['verdict']} |"
        )
    return lines


def confidence_lines(sets: Sequence[dict[str, Any]]) -> list[str]:
    """One sentence per horizon: the methods of its model confidence set."""
    return [
        f"Horizon {m['horizon']}: the {1 - m['size']:.0%} model confidence set (pinball loss) is "
        f"{{{', '.join(LABELS.get(x, x) for x in m['included'])}}}."
        for m in sets
    ]


def cost_table(costs: Sequence[Cost]) -> list[str]:
    by = {(c.method, c.history): c.median_us for c in costs}
    lengths = sorted({c.history for c in costs})
    lines = [
        "| history | latent step (µs) | ar window (µs) | full re-run (µs) | ar / latent | re-run / latent |",
        "|---|---|---|---|---|---|",
    ]
    for n in lengths:
        latent, ar, rerun = by[("latent_step", n)], by[("ar_window", n)], by[("full_rerun", n)]
        lines.append(f"| {n:,} | {latent:.0f} | {ar:.0f} | {rerun:.0f} | {ar / latent:.1f}x | {rerun / latent:.1f}x |")
    return lines


def write_markdown(report: dict[str, Any], plots: Sequence[Path], out: Path) -> Path:
    data, metrics, horizon = report["data"], report["metrics"], report["horizon"]
    tickers = [t for t in next(iter(metrics.values())) if t != "pooled"]
    last = f"h{horizon}"
    horizons = ["h1"] if last == "h1" else ["h1", last]
    tests, level = report["diebold_mariano"], report["significance_level"]
    machine = report["machine"]
    lines = [
        "# ar vs latent vs baselines",
        "",
        f"Made by `latentcast compare` on {report['created']} ({machine['cores']} cores, "
        f"{machine['torch_threads']} torch threads, torch {machine['torch']}).",
        "",
        f"**Data**: {data['source']} prices of {', '.join(data['tickers'])}, {data['first']} to {data['last']}, "
        f"features {', '.join(data['features'])}. Split by date: training before {data['validation_start']}, "
        f"validation before {data['test_start']}, test from {data['test_start']}.",
        "",
        f"**Protocol**: {report['protocol']}. Targets are cumulative log returns over 1..{horizon} days; "
        f"quantiles {report['quantiles']}. MAE/RMSE/pinball in % of log return.",
        "",
        f"**This is {report['view']}** ([backtest](../backtest/backtest.md) in the docs).",
        "",
        f"**Verdicts** rest on Diebold-Mariano tests of per-day losses (each day's mean over the tickers "
        f"forecast that day; equal weights on lags 1..h-1, Harvey-Leybourne-Newbold correction), their p-values "
        f"Holm-adjusted across the {len(tests)} tests of this report: a difference is called only where the "
        f"adjusted p < {level}. Beside them, the model confidence set (Hansen, Lunde and Nason, at "
        f"{report['mcs_size']}) of every method with quantiles.",
        "",
        "## Verdict",
        "",
        *[f"- {line}" for h in horizons for line in verdict(metrics, tests, h, level)],
        *[f"- {line}" for line in confidence_lines(report["confidence_sets"])],
        "",
        "## Diebold-Mariano tests (negative: a's loss is lower)",
        "",
        *test_table(tests),
        "",
        "## One day ahead, all tickers pooled",
        "",
        *metric_table(metrics, "pooled", "h1"),
    ]
    if last != "h1":
        lines += ["", f"## {horizon} days ahead, all tickers pooled", "", *metric_table(metrics, "pooled", last)]
    for ticker in tickers:
        lines += ["", f"## {ticker}, one day ahead", "", *metric_table(metrics, ticker, "h1")]
        if last != "h1":
            lines += ["", f"## {ticker}, {horizon} days ahead", "", *metric_table(metrics, ticker, last)]
    lines += ["", "## Cost of one more forecast", "", *cost_table_from_json(report["cost_per_forecast_us"]), ""]
    lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    lines += ["", "## Models", ""]
    for mode, described in report["models"].items():
        lines.append(
            f"- **{mode}**: version {described['version'] or '(trained for this report)'}, "
            f"config `{described['config']}`, training `{described['training']}`"
        )
    path = out / "report.md"
    write_whole(path, "\n".join(lines) + "\n")
    return path


def cost_table_from_json(rows: Sequence[dict[str, Any]]) -> list[str]:
    return cost_table([Cost(**row) for row in rows])


def write_plots(
    spans: dict[str, list[SpanForecasts]], costs: Sequence[Cost], out: Path, ticker: str | None
) -> list[Path]:
    """The three PNG plots; returns their paths."""
    return [
        _forecast_plot(spans, out / "forecast_vs_actual.png", ticker),
        _cumulative_error_plot(spans, out / "cumulative_abs_error.png"),
        _cost_plot(costs, out / "cost_per_forecast.png"),
    ]


def _forecast_plot(spans: dict[str, list[SpanForecasts]], path: Path, ticker: str | None) -> Path:
    name = ticker or spans["latent"][0].ticker
    fig, axes = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    for ax, mode in zip(axes, ("latent", "ar"), strict=True):
        span = next(s for s in spans[mode] if s.ticker == name)
        garch = next(s for s in spans["garch_t"] if s.ticker == name)
        k = slice(-PLOT_DAYS - 1, -1)  # the last day has no realised return yet
        assert span.quantiles is not None and garch.quantiles is not None
        days = span.dates[k]
        ax.fill_between(
            days, span.quantiles[k, 0, 0] * 100, span.quantiles[k, 0, -1] * 100, alpha=0.3, label=f"{mode} 10-90% band"
        )
        ax.plot(days, span.point[k, 0] * 100, lw=1, label=f"{mode} median")
        ax.plot(days, garch.quantiles[k, 0, 0] * 100, "k--", lw=0.7, label="GARCH-t 10-90%")
        ax.plot(days, garch.quantiles[k, 0, -1] * 100, "k--", lw=0.7)
        ax.plot(days, span.actual[k, 0] * 100, "o", ms=2.5, color="black", label="realised return")
        ax.set_ylabel("next-day log return (%)")
        ax.set_title(f"{name}: one-day-ahead forecasts, last {PLOT_DAYS} days of the test span ({mode})")
        ax.legend(loc="upper left", fontsize=8, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _cumulative_error_plot(spans: dict[str, list[SpanForecasts]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(11, 5))
    # previous return is left out: its error grows so fast that it would flatten every other line
    for method in ("latent", "ar", "linear_ar", "garch_t"):
        dates = np.concatenate([s.dates for s in spans[method]])
        actual = np.concatenate([s.actual[:, 0] for s in spans[method]])
        error = np.abs(actual - np.concatenate([s.point[:, 0] for s in spans[method]])) - np.abs(actual)
        keep = np.isfinite(error)
        order = np.argsort(dates[keep], kind="stable")
        ax.plot(dates[keep][order], np.cumsum(error[keep][order]) * 100, lw=1.2, label=LABELS[method])
    ax.axhline(0, color="black", lw=0.8, label="random walk (zero line)")
    ax.set_ylabel("cumulative |error| minus the random walk's (% log return)")
    ax.set_title("One day ahead, all tickers pooled by date: below zero beats the random walk")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _cost_plot(costs: Sequence[Cost], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 5))
    names = {
        "latent_step": "latent: one step, as served (state bytes, numpy kernel)",
        "latent_torch": "latent: one step, torch, state in memory",
        "ar_window": "ar: re-read window",
        "full_rerun": "re-run history",
    }
    for method, label in names.items():
        points = sorted((c.history, c.median_us) for c in costs if c.method == method)
        ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("history length (observations)")
    ax.set_ylabel("median cost of the next forecast (µs)")
    ax.set_title("Cost per forecast against history length")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_json_report(payload: dict[str, Any], path: Path) -> Path:
    """Write ``payload`` to ``path`` whole or not at all (a reader never sees half a report)."""
    write_whole(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")
    return path
