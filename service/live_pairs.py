"""Paired live losses of a session model and its shadow, and their Diebold-Mariano verdict per horizon.

For each pair (the session's version, its shadow's) and horizon a store keeps
the last ``LATENTCAST_SHADOW_PAIRS`` differences of mean pinball loss (session
model less shadow) on the forecasts both settled (``service/shadows.py``), in
the order the store received them; ``report`` tests them with
``training.significance.diebold_mariano``. Sessions are treated as independent:
the differences of several sessions that settle at the same time are not
averaged first (docs/live.md says what that assumes).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from data.errors import DataError
from training.significance import SIGNIFICANCE, diebold_mariano

PairKey = tuple[str, str, int]  # the session's version, the shadow's, horizon
SEPARATOR = "|"  # in the Redis list names: version, shadow version, horizon


class PairedLosses:
    """The last differences kept per pair and horizon: ``add`` in this process, or read from a store."""

    def __init__(self) -> None:
        self.kept: dict[PairKey, deque[float]] = {}

    def add(self, model: str, shadow: str, differences: dict[int, list[float]], keep: int) -> None:
        for horizon, values in differences.items():
            kept = self.kept.get((model, shadow, horizon))
            if kept is None or kept.maxlen != keep:
                kept = self.kept[(model, shadow, horizon)] = deque(kept or (), maxlen=keep)
            kept.extend(values)


def report(paired: PairedLosses, level: float = SIGNIFICANCE) -> list[dict[str, Any]]:
    """Per pair, per horizon: how many differences are kept, their mean and the Diebold-Mariano verdict at
    ``level`` ("model", "shadow" for the one with the lower loss, or "tie"; None with too few to test)."""
    pairs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for (model, shadow, horizon), kept in sorted(paired.kept.items()):
        d = np.fromiter(kept, np.float64, len(kept))
        row: dict[str, Any] = {
            "horizon": horizon,
            "count": len(d),
            "mean_difference": float(d.mean()) if len(d) else None,
            "statistic": None,
            "p_value": None,
            "verdict": None,
        }
        try:
            test = diebold_mariano(d, np.zeros_like(d), horizon)
        except DataError:
            test = None
        if test is not None:
            better = "shadow" if test.mean_difference > 0 else "model"
            row |= {
                "statistic": test.statistic,
                "p_value": test.p_value,
                "verdict": better if test.p_value < level else "tie",
            }
        pairs.setdefault((model, shadow), []).append(row)
    return [{"model": model, "shadow": shadow, "horizons": rows} for (model, shadow), rows in pairs.items()]
