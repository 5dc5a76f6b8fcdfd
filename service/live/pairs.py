"""Paired live losses of a session model and its shadow, and their Diebold-Mariano verdict per horizon.

For each pair (the session's version, its shadow's) and horizon a store keeps
the last ``LATENTCAST_SHADOW_PAIRS`` differences of mean pinball loss (session
model less shadow) on the forecasts both settled (``service/live/shadows.py``), in
the order the store received them, each with the ``time`` of the observation
that settled it where the observation had one; ``report`` tests them with
``training.significance.diebold_mariano``. Where every kept difference has a
time, the differences settled at the same time (by several sessions) are
averaged first and the test runs on those means, in the order of their times:
cross-session correlation is averaged out. Otherwise the sessions are treated
as independent (docs/live.md says what that assumes); the reply says which.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from latentcast.errors import DataError
from training.significance import SIGNIFICANCE, diebold_mariano

PairKey = tuple[str, str, int]  # the session's version, the shadow's, horizon
SEPARATOR = "|"  # in the Redis list names: version, shadow version, horizon


class PairedLosses:
    """The last differences kept per pair and horizon: ``add`` in this process, or read from a store."""

    def __init__(self) -> None:
        self.kept: dict[PairKey, deque[float]] = {}
        self.times: dict[PairKey, deque[str | None]] = {}  # of each kept difference's settling observation

    def add(
        self,
        model: str,
        shadow: str,
        differences: dict[int, list[float]],
        keep: int,
        times: dict[int, list[str | None]] | None = None,
    ) -> None:
        for horizon, values in differences.items():
            key = (model, shadow, horizon)
            kept, when = self.kept.get(key), self.times.get(key)
            if kept is None or when is None or kept.maxlen != keep:
                kept = self.kept[key] = deque(kept or (), maxlen=keep)
                when = self.times[key] = deque(when or [None] * len(kept), maxlen=keep)
            kept.extend(values)
            when.extend((times or {}).get(horizon) or [None] * len(values))

    def series(self, key: PairKey) -> tuple[np.ndarray, bool]:
        """The differences the test runs on, and whether they are means per observation time: so where every
        kept difference has a time (in the order of the times, as strings: ISO times sort by time)."""
        kept, when = self.kept[key], self.times.get(key)
        d = np.fromiter(kept, np.float64, len(kept))
        if not len(d) or when is None or len(when) != len(d) or any(t is None for t in when):
            return d, False
        by_time: dict[str, list[float]] = {}
        for time, value in zip(when, d.tolist(), strict=True):
            by_time.setdefault(str(time), []).append(value)
        return np.array([sum(v) / len(v) for _, v in sorted(by_time.items())], dtype=np.float64), True


def report(paired: PairedLosses, level: float = SIGNIFICANCE) -> list[dict[str, Any]]:
    """Per pair, per horizon: how many differences are kept, their mean and the Diebold-Mariano verdict at
    ``level`` ("model", "shadow" for the one with the lower loss, or "tie"; None with too few to test)."""
    pairs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for (model, shadow, horizon), kept in sorted(paired.kept.items()):
        d, per_time = paired.series((model, shadow, horizon))
        row: dict[str, Any] = {
            "horizon": horizon,
            "count": len(kept),
            "sessions": "averaged per time" if per_time else "independent",
            "tested": len(d),
            "mean_difference": float(np.mean(np.fromiter(kept, np.float64, len(kept)))) if kept else None,
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
