"""Running sums of live scores per model version, mode and horizon, and what they report.

A store keeps one ``HorizonSums`` per (version, mode, horizon): a few numbers
whatever the number of sessions. The Redis store keeps them as fields of one
hash (``fields`` and ``from_fields``), added to by ``HINCRBYFLOAT`` so that
several API processes add up; the memory store keeps them in a ``LiveSums``.
``report`` turns them into means: pinball loss (over its levels, as
``training.metrics.pinball``), coverage of the outer band with Kupiec's test,
and the median's mean absolute error against the random walk's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.live_scores import Settled
from training.coverage_tests import coverage_tests

# a field of the Redis hash: version, mode, horizon, then the sum's name ("n", "inside", "abs", "walk",
# "since", or "p" and a level)
SEPARATOR = "|"
SUM_NAMES = ("n", "inside", "abs", "walk")


@dataclass
class HorizonSums:
    """Sums of one version's settled forecasts of one horizon since ``since`` (seconds since the epoch)."""

    count: int = 0
    pinball: dict[float, float] = field(default_factory=dict)  # by quantile level
    inside: int = 0
    abs_error: float = 0.0
    walk_abs_error: float = 0.0
    since: float = math.inf

    def add(self, settled: Settled, now: float) -> None:
        self.count += settled.count
        for level, loss in zip(settled.levels, settled.pinball, strict=True):
            self.pinball[level] = self.pinball.get(level, 0.0) + loss
        self.inside += settled.inside
        self.abs_error += settled.abs_error
        self.walk_abs_error += settled.walk_abs_error
        self.since = min(self.since, now)


Key = tuple[str, str, int]  # version, mode, horizon


class LiveSums:
    """``HorizonSums`` by (version, mode, horizon), added to in this process."""

    def __init__(self) -> None:
        self.sums: dict[Key, HorizonSums] = {}

    def add(self, version: str, mode: str, settled: Iterable[Settled], now: float) -> None:
        for one in settled:
            key = (version, mode, one.horizon)
            sums = self.sums.get(key)
            if sums is None:
                sums = self.sums[key] = HorizonSums()
            sums.add(one, now)


def fields(version: str, mode: str, settled: Iterable[Settled]) -> dict[str, float]:
    """The increments of the Redis hash's fields that ``settled`` makes (``since`` is set apart, once)."""
    out: dict[str, float] = {}
    for one in settled:
        prefix = SEPARATOR.join((version, mode, str(one.horizon), ""))
        out[prefix + "n"] = one.count
        out[prefix + "inside"] = one.inside
        out[prefix + "abs"] = one.abs_error
        out[prefix + "walk"] = one.walk_abs_error
        for level, loss in zip(one.levels, one.pinball, strict=True):
            out[f"{prefix}p{level!r}"] = loss
    return out


def since_fields(version: str, mode: str, settled: Iterable[Settled]) -> list[str]:
    """The ``since`` field of each horizon ``settled`` holds."""
    return [SEPARATOR.join((version, mode, str(one.horizon), "since")) for one in settled]


def from_fields(values: dict[str, str]) -> LiveSums:
    """The sums a Redis hash holds (as ``fields`` and ``since_fields`` wrote them); fields of another shape
    are skipped."""
    live = LiveSums()
    for name, value in values.items():
        parts = name.rsplit(SEPARATOR, 3)
        if len(parts) != 4 or not parts[2].isdigit():
            continue
        version, mode, horizon, sum_name = parts
        key = (version, mode, int(horizon))
        sums = live.sums.get(key)
        if sums is None:
            sums = live.sums[key] = HorizonSums()
        number = float(value)
        if sum_name == "n":
            sums.count = int(number)
        elif sum_name == "inside":
            sums.inside = int(number)
        elif sum_name == "abs":
            sums.abs_error = number
        elif sum_name == "walk":
            sums.walk_abs_error = number
        elif sum_name == "since":
            sums.since = number
        elif sum_name.startswith("p"):
            sums.pinball[float(sum_name[1:])] = number
    return live


def horizon_report(horizon: int, sums: HorizonSums) -> dict[str, Any]:
    """The means of one horizon's sums, as ``GET /v1/models/live`` shows them."""
    n = sums.count
    levels = sorted(sums.pinball)
    band = (levels[0], levels[-1]) if levels else (math.nan, math.nan)
    kupiec = None
    if n >= 2 and levels:
        misses = np.zeros(n, bool)
        misses[: n - sums.inside] = True  # Kupiec's test reads the count of misses alone, not their order
        kupiec = coverage_tests([misses], 1 - (band[1] - band[0])).kupiec_p
    return {
        "horizon": horizon,
        "count": n,
        "since": None if math.isinf(sums.since) else sums.since,
        "pinball": _mean(sum(sums.pinball.values()), n * len(levels)),
        "pinball_by_level": {repr(level): _mean(sums.pinball[level], n) for level in levels},
        "band": list(band),
        "coverage": _mean(sums.inside, n),
        "expected_coverage": band[1] - band[0],
        "kupiec_p": kupiec,
        "mae": _mean(sums.abs_error, n),
        "mae_random_walk": _mean(sums.walk_abs_error, n),
        "mae_ratio": sums.abs_error / sums.walk_abs_error if sums.walk_abs_error > 0 else None,
    }


def report(live: LiveSums, champions: dict[str, str]) -> list[dict[str, Any]]:
    """Per model version (champions first, then by mode and version): its horizons' means."""
    versions: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for (version, mode, horizon), sums in sorted(live.sums.items()):
        versions.setdefault((version, mode), []).append(horizon_report(horizon, sums))
    rows = [
        {"version": version, "mode": mode, "champion": champions.get(mode) == version, "horizons": horizons}
        for (version, mode), horizons in versions.items()
    ]
    return sorted(rows, key=lambda row: (not row["champion"], row["mode"], row["version"]))


def _mean(total: float, count: int) -> float | None:
    return total / count if count else None
