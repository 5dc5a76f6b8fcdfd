"""Calibration by session age: how the forecasts of a session opened with a short history score.

Every session starts young. Sessions are opened every ``every`` trading days
over the test span, each with the ``history`` closes up to its opening day (as
a client would open one with ``"history": [...]``), and then read one close a
day to the end of the span. Forecast j of a session is the one made after its
j-th close from the opening on (forecast 1 is the open's). Each forecast is
scored beside the warmed forecast of the same day (the model run over the
whole history before it, ``training/evaluate.py``), by age bucket: 10-90%
coverage, pinball loss, and band width over the warmed one's.

Sessions are scored as the service serves them: split-conformal offsets by
default (young offsets in their place while a session has read few returns,
``models/calibration.py``), and adaptive ones besides for a session opened with
``"calibration": "adaptive"`` (the same arithmetic as ``training/conformal.py``'s
replay).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and in CI

import matplotlib.pyplot as plt
import numpy as np

from data.features import Scaler, Series
from models.calibration import AdaptiveConfig, YoungOffsets, apply_offsets
from models.config import ModelConfig
from models.forecaster import Forecaster
from models.volatility import steady_weight
from training.config import TrainConfig
from training.conformal import adaptive_forecasts, fit_offsets
from training.dataset import TrainingData
from training.evaluate import SpanForecasts, model_forecasts, model_outputs, session_outputs
from training.metrics import coverage, pinball
from training.pipeline import fit
from training.significance import DieboldMariano, compare_losses

SESSIONS = {"conformal": "split-conformal (default)", "adaptive": "adaptive"}


@dataclass(frozen=True)
class AgeConfig:
    """Sessions opened every ``every`` trading days of the test span with ``history`` closes; age buckets."""

    every: int = 20
    history: int = 5
    buckets: tuple[tuple[int, int | None], ...] = ((1, 5), (6, 20), (21, 60), (61, None))
    adaptive_rate: float = AdaptiveConfig().rate
    adaptive_first_rate: float = AdaptiveConfig().first_rate

    def labels(self) -> list[str]:
        return [f"{a}-{b}" if b is not None else f"{a}+" for a, b in self.buckets]


def session_spans(
    model: Forecaster,
    scaler: Scaler,
    series: Sequence[Series],
    starts: Sequence[int],
    offsets: np.ndarray,
    config: AgeConfig,
    young: YoungOffsets | None = None,
) -> dict[str, list[tuple[SpanForecasts, SpanForecasts, np.ndarray]]]:
    """For each way of serving (``SESSIONS``): (session forecasts, warmed forecasts of the same days, ages).

    ``offsets`` (H, Q) calibrate every forecast, and ``young`` in their place
    those made after few returns, as ``Predictor`` does.
    """
    levels, median = list(model.config.quantiles), model.config.median_index
    out: dict[str, list[tuple[SpanForecasts, SpanForecasts, np.ndarray]]] = {name: [] for name in SESSIONS}
    for s, start in zip(series, starts, strict=True):
        rows, warm = model_outputs(model, scaler, s, start)
        warm = apply_offsets(warm, offsets)
        for origin in range(max(start, config.history - 1), len(s), config.every):
            raw = session_outputs(model, scaler, s, origin, config.history)
            days = np.arange(origin, len(s))
            span = SpanForecasts(s.ticker, s.dates[days], s.close[days], s.targets[days], raw[:, :, median], raw)
            warmed = warm[days - rows[0]]
            warmed_span = replace(span, point=warmed[:, :, median], quantiles=warmed)
            ages = days - origin + 1
            # forecast j follows history - 2 + j returns
            by_age = offsets if young is None else young.at(ages + config.history - 2, offsets)
            conformal = apply_offsets(raw, by_age)
            served = replace(span, point=conformal[:, :, median], quantiles=conformal)
            out["conformal"].append((served, warmed_span, ages))
            adaptive = adaptive_forecasts(span, by_age, levels, config.adaptive_rate, config.adaptive_first_rate)
            out["adaptive"].append((adaptive, warmed_span, ages))
    return out


def age_scores(
    spans: dict[str, list[tuple[SpanForecasts, SpanForecasts, np.ndarray]]],
    levels: Sequence[float],
    horizons: Sequence[int],
    config: AgeConfig,
) -> dict[str, Any]:
    """By way of serving, horizon (``h1``) and age bucket: coverage, pinball, the warmed pinball, width ratio, n."""
    levels_array = np.asarray(levels)
    out: dict[str, Any] = {}
    for name, parts in spans.items():
        ages = np.concatenate([a for _, _, a in parts])
        young = np.concatenate([s.quantiles for s, _, _ in parts if s.quantiles is not None])
        warm = np.concatenate([w.quantiles for _, w, _ in parts if w.quantiles is not None])
        actual = np.concatenate([s.actual for s, _, _ in parts])
        out[name] = {}
        for h in horizons:
            by_bucket = {}
            for label, (low, high) in zip(config.labels(), config.buckets, strict=True):
                pick = (ages >= low) & (ages <= (high if high is not None else ages.max()))
                pick &= np.isfinite(actual[:, h - 1])
                y, q, w = actual[pick, h - 1], young[pick, h - 1], warm[pick, h - 1]
                by_bucket[label] = {
                    "n": int(pick.sum()),
                    "coverage": coverage(y, q, levels_array),
                    "warmed_coverage": coverage(y, w, levels_array),
                    "pinball": pinball(y, q, levels_array),
                    "warmed_pinball": pinball(y, w, levels_array),
                    "width_ratio": float(np.mean(q[:, -1] - q[:, 0]) / np.mean(w[:, -1] - w[:, 0])),
                }
            out[name][f"h{h}"] = by_bucket
    return out


def age_lines(by_scale: dict[str, Any], config: AgeConfig, goal: tuple[float, float]) -> list[str]:
    """Markdown: per way of serving and horizon, a coverage table (returns x k by bucket), then pinball and width."""
    labels = config.labels()
    lines: list[str] = []
    first = next(iter(by_scale.values()))
    for name, label in SESSIONS.items():
        for horizon in first[name]:
            lines += [f"### {label} sessions, horizon {horizon[1:]}", ""]
            lines += ["| returns | " + " | ".join(f"forecasts {b}" for b in labels) + " |"]
            lines += ["|---" * (len(labels) + 1) + "|"]
            for k, scores in by_scale.items():
                cells = []
                for b in labels:
                    s = scores[name][horizon][b]
                    mark = "" if goal[0] <= round(s["coverage"], 3) <= goal[1] else " ✗"
                    cells.append(
                        f"{s['coverage'] * 100:.1f}{mark} (warmed {s['warmed_coverage'] * 100:.1f}; "
                        f"pinball x{s['pinball'] / s['warmed_pinball']:.3f}, width x{s['width_ratio']:.2f})"
                    )
                lines.append(f"| x{k} | " + " | ".join(cells) + " |")
            lines.append("")
    return lines


def age_plot(by_scale: dict[str, Any], config: AgeConfig, goal: tuple[float, float], path: Path) -> Path:
    """Coverage by session age: a panel per way of serving and horizon, a line per return multiplier."""
    first = next(iter(by_scale.values()))
    horizons = list(first["conformal"])
    fig, axes = plt.subplots(len(SESSIONS), len(horizons), figsize=(5 * len(horizons), 3.4 * len(SESSIONS)))
    labels = config.labels()
    for row, (name, label) in enumerate(SESSIONS.items()):
        for col, horizon in enumerate(horizons):
            ax = axes[row][col]
            for k, scores in by_scale.items():
                cells = [scores[name][horizon][b] for b in labels]
                ax.plot(labels, [c["coverage"] * 100 for c in cells], marker="o", label=f"returns x{k}")
            warmed = [first[name][horizon][b]["warmed_coverage"] * 100 for b in labels]
            ax.plot(labels, warmed, color="black", linestyle=":", label="warmed, same days (x1)")
            ax.axhspan(goal[0] * 100, goal[1] * 100, color="grey", alpha=0.3)
            ax.set_ylim(50, 100)
            ax.set_title(f"{label} sessions, horizon {horizon[1:]}", fontsize=9)
            ax.set_xlabel("forecasts since the session opened")
            ax.set_ylabel("10-90% coverage (%)")
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def against_plain_ewma(
    data: TrainingData,
    model_config: ModelConfig,
    train_config: TrainConfig,
    spans: Sequence[SpanForecasts],
    horizons: Sequence[int],
) -> dict[str, Any]:
    """Diebold-Mariano tests of warmed ``spans`` against the plain-EWMA model's, by horizon (``h1``).

    The plain-EWMA model is ``model_config``'s with the variance starting at its
    steady weight instead of ``variance_prior`` (``models/volatility.py``),
    trained on the same data and seed, with its own split-conformal offsets: the
    warmed forecasts of a session must be no worse for the young ones' sake.
    """
    plain = ModelConfig.from_dict({**model_config.to_dict(), "variance_prior": steady_weight(model_config)})
    trained = fit(plain, data, train_config)
    offsets = fit_offsets(trained.model, data.scaler, data.series, data.split)
    starts = [data.split.bounds(s)[1] for s in data.series]
    before = model_forecasts(trained.model, data.scaler, data.series, starts, offsets)
    levels = list(model_config.quantiles)
    return {f"h{h}": compare_losses([spans], [before], levels, h).to_dict() for h in horizons}


def plain_ewma_lines(tests: dict[str, Any]) -> list[str]:
    """Markdown: the warmed forecasts against the plain-EWMA model's, a sentence per horizon."""
    lines = []
    for horizon, test in tests.items():
        result = DieboldMariano(**test)
        verdict = result.verdict("this model", "the plain-EWMA model")
        lines.append(f"- horizon {horizon[1:]}: statistic {result.statistic:.3f} over {result.n} days; {verdict}.")
    return [*lines, ""]


def age_section(report: dict[str, Any], age: AgeConfig, goal: tuple[float, float], plot: str) -> list[str]:
    """The calibration report's section on sessions by age (Markdown lines)."""
    young = report["young_offsets"]
    edges = "" if young is None else ", ".join(str(e) for e in young["returns_seen"])
    return [
        "## Sessions by age",
        "",
        f"Sessions opened every {age.every} trading days of the test span with {age.history} closes (forecast 1 "
        "is the one the open answers), each then read one close a day to the end of the span, served with the "
        "volatility-scaled model as the service serves it: split-conformal offsets, and in their place the young "
        f"offsets while a session has read few returns (buckets from {edges} returns, fit on sessions opened "
        "every 5 days of the validation span with two closes, `training/conformal.py`). Per age bucket: 10-90% "
        f"coverage (goal {goal[0] * 100:.0f}-{goal[1] * 100:.0f}%, ✗ outside), and beside it the warmed "
        "forecasts' coverage on the same days, the pinball loss over the warmed one's and the band width over "
        "the warmed one's (`training/session_age.py`).",
        "",
        f"![coverage by age]({plot})",
        "",
        *age_lines(report["by_age"], age, goal),
        "Warmed forecasts (split-conformal, the prices as they are) against those of the same model trained with "
        "the plain EWMA, whose variance starts at the training variance with the steady weight (daily pinball "
        "loss, Diebold-Mariano):",
        "",
        *plain_ewma_lines(report["against_plain_ewma"]),
        "### Why young sessions are served this way",
        "",
        "- **The variance starts from the session's own returns.** It weighs the training variance as "
        f"{report['model']['variance_prior']:g} pseudo-returns (`variance_prior`, `models/volatility.py`), so a "
        "session's band scales with the returns it opens with from the first forecast: the x0.3, x1 and x3 rows "
        "above differ little. Started at the training variance, as the plain EWMA is, a quiet asset's first "
        "bands are far too wide and a wild one's far too narrow, for dozens of forecasts.",
        "- **Young offsets carry the uncertainty of a variance read from few returns.** Scaled by such an "
        "estimate alone, young bands cover too little: it is noisy, and the state has seen little. The offsets "
        "measure the widening each bucket of returns seen needs on validation sessions, as split-conformal "
        "offsets do for warmed forecasts, whatever the returns' tails. A Student-t predictive with n - 1 degrees "
        "of freedom assumes normal returns and widens too little for the first forecasts; training on streams "
        "that start fresh with short warm-ups scores too few young rows per epoch to change what the model "
        "forecasts there. From 65 returns on a session is served as a warmed one.",
        "- **The default calibration stays split-conformal.** With young offsets, default and adaptive sessions "
        "meet the age goal alike in the tables above; past the first forecasts adaptive offsets add pinball "
        'loss (the 21-60 and 61+ columns), so they remain a choice a session makes (`"calibration": '
        '"adaptive"`), for an asset unlike the training ones over a long session.',
        "",
    ]
