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
default, and adaptive ones for a session opened with ``"calibration":
"adaptive"`` (the same arithmetic as ``training/conformal.py``'s replay).
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
import torch

from data.features import Scaler, Series
from models import fused_gru
from models.calibration import AdaptiveConfig, apply_offsets
from models.forecaster import Forecaster
from training.conformal import adaptive_forecasts
from training.evaluate import SpanForecasts, model_outputs
from training.metrics import coverage, pinball

SESSIONS = {"conformal": "split-conformal (default)", "adaptive": "adaptive"}


@dataclass(frozen=True)
class AgeConfig:
    """Sessions opened every ``every`` trading days of the test span with ``history`` closes; age buckets."""

    every: int = 20
    history: int = 5
    buckets: tuple[tuple[int, int | None], ...] = ((1, 5), (6, 20), (21, 60), (61, None))
    adaptive_rate: float = AdaptiveConfig().rate

    def labels(self) -> list[str]:
        return [f"{a}-{b}" if b is not None else f"{a}+" for a, b in self.buckets]


def session_outputs(model: Forecaster, scaler: Scaler, series: Series, origin: int, history: int) -> np.ndarray:
    """(N, H, Q) unscaled quantiles of a session opened after row ``origin`` with ``history`` closes, to the end.

    Row i's feature is the return from close i - 1 to close i, so ``history``
    closes up to ``origin`` give the session its rows ``origin - history + 2``
    to ``origin``; its first forecast is that after row ``origin``.
    """
    first = origin - history + 2
    assert first >= 1, f"a session opened after row {origin} cannot hold {history} closes"
    x = scaler.transform(series.features[first:], model.config.volatility_scaled)
    model.eval()
    with torch.inference_mode(), fused_gru.evaluation():
        out, _ = model(torch.from_numpy(x)[None])
    return out[0].numpy()[history - 2 :].astype(np.float64) * scaler.target_scale


def session_spans(
    model: Forecaster,
    scaler: Scaler,
    series: Sequence[Series],
    starts: Sequence[int],
    offsets: np.ndarray,
    config: AgeConfig,
) -> dict[str, list[tuple[SpanForecasts, SpanForecasts, np.ndarray]]]:
    """For each way of serving (``SESSIONS``): (session forecasts, warmed forecasts of the same days, ages)."""
    levels = list(model.config.quantiles)
    out: dict[str, list[tuple[SpanForecasts, SpanForecasts, np.ndarray]]] = {name: [] for name in SESSIONS}
    for s, start in zip(series, starts, strict=True):
        rows, warm = model_outputs(model, scaler, s, start)
        warm = apply_offsets(warm, offsets)
        for origin in range(max(start, config.history - 1), len(s), config.every):
            raw = session_outputs(model, scaler, s, origin, config.history)
            days = np.arange(origin, len(s))
            span = SpanForecasts(s.ticker, s.dates[days], s.close[days], s.targets[days], raw[:, :, 0], raw)
            warmed_span = replace(span, quantiles=warm[days - rows[0]])
            ages = days - origin + 1
            conformal = apply_offsets(raw, offsets)
            out["conformal"].append((replace(span, quantiles=conformal), warmed_span, ages))
            adaptive = adaptive_forecasts(span, offsets, levels, config.adaptive_rate)
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
