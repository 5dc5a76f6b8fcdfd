"""Running sums of live scores per model version, mode and horizon, and what they report.

A store keeps one ``HorizonSums`` per (version, mode, horizon): a few numbers
whatever the number of sessions. The Redis store keeps them in one hash, a
field per version and mode added to inside a script so that several API
processes add up (``service/stores/redis_live.py``; ``from_fields`` reads the
earlier layout, a field per sum); the memory store keeps them in a ``LiveSums``.
``report`` turns them into means: pinball loss (over its levels, as
``training.metrics.pinball``), coverage of the outer band with Kupiec's test,
and the median's mean absolute error against the random walk's.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.live.scores import ABS_ERROR, COUNT, INSIDE, WALK_ABS_ERROR, Settled
from training.coverage_tests import coverage_tests

# a field of the Redis hash: version, mode, horizon, then the sum's name ("n", "inside", "abs", "walk",
# "since", or "p" and a level)
SEPARATOR = "|"


@dataclass
class HorizonSums:
    """Sums of one version's settled forecasts of one horizon since ``since`` (seconds since the epoch):
    ``totals`` as a row of ``Settled.sums`` holds them (count, pinball per level of ``levels``, inside, abs
    error, walk abs error)."""

    levels: tuple[float, ...] = ()
    totals: list[float] = field(default_factory=list)
    since: float = math.inf

    @property
    def count(self) -> int:
        return int(self.totals[COUNT]) if self.totals else 0

    @property
    def pinball(self) -> dict[float, float]:
        """The pinball sum by quantile level."""
        return dict(zip(self.levels, self.totals[1:INSIDE], strict=True))

    @property
    def inside(self) -> int:
        return int(self.totals[INSIDE]) if self.totals else 0

    @property
    def abs_error(self) -> float:
        return self.totals[ABS_ERROR] if self.totals else 0.0

    @property
    def walk_abs_error(self) -> float:
        return self.totals[WALK_ABS_ERROR] if self.totals else 0.0


Key = tuple[str, str, int]  # version, mode, horizon


@dataclass
class _VersionSums:
    """One version's ``Settled.sums`` added up (H rows), and when each horizon's first was."""

    levels: tuple[float, ...]
    totals: list[float]
    since: list[float]


class LiveSums:
    """``HorizonSums`` by (version, mode, horizon): read from a store (``rows``), or added to in this process
    (``add``: one loop over the flat sums, at every append that settles some)."""

    def __init__(self) -> None:
        self.rows: dict[Key, HorizonSums] = {}
        self._added: dict[tuple[str, str], _VersionSums] = {}

    def add(self, version: str, mode: str, settled: Settled, now: float) -> None:
        kept = self._added.get((version, mode))
        if kept is None or len(kept.totals) != len(settled.sums):
            width = len(settled.levels) + 4
            horizon = len(settled.sums) // width
            kept = self._added[(version, mode)] = _VersionSums(
                settled.levels, [0.0] * len(settled.sums), [math.inf] * horizon
            )
        totals = kept.totals = list(map(operator.add, kept.totals, settled.sums))
        if math.inf in kept.since:  # a horizon not settled yet: see which are now
            width = len(settled.levels) + 4
            for h, first in enumerate(kept.since):
                if first == math.inf and totals[h * width + COUNT]:
                    kept.since[h] = now

    def merge(self, key: Key, sums: HorizonSums) -> None:
        """Add ``sums``, read from a store, to those read under ``key`` (of the same levels) before."""
        kept = self.rows.get(key)
        if kept is None or kept.levels != sums.levels:  # levels differ only in sums of no model: keep the first
            self.rows.setdefault(key, sums)
            return
        totals = list(map(operator.add, kept.totals, sums.totals))
        self.rows[key] = HorizonSums(kept.levels, totals, min(kept.since, sums.since))

    @property
    def sums(self) -> dict[Key, HorizonSums]:
        """Every version's horizons that have settled forecasts."""
        out = dict(self.rows)
        for (version, mode), kept in self._added.items():
            width = len(kept.levels) + 4
            for h, since in enumerate(kept.since):
                row = kept.totals[h * width : (h + 1) * width]
                if row[COUNT]:
                    out[(version, mode, h + 1)] = HorizonSums(kept.levels, row, since)
        return out


def from_fields(values: dict[str, str]) -> LiveSums:
    """The sums a Redis hash holds in fields of the earlier layout, one per sum
    ("<version>|<mode>|<horizon>|<sum>"); fields of another shape are skipped."""
    named: dict[Key, dict[str, float]] = {}
    for name, value in values.items():
        parts = name.rsplit(SEPARATOR, 3)
        if len(parts) == 4 and parts[2].isdigit():
            named.setdefault((parts[0], parts[1], int(parts[2])), {})[parts[3]] = float(value)
    live = LiveSums()
    for key, sums in named.items():
        pinball = sorted((float(name[1:]), total) for name, total in sums.items() if name.startswith("p"))
        if "n" not in sums or not pinball:
            continue
        totals = [sums["n"], *(total for _, total in pinball)]
        totals += [sums.get("inside", 0.0), sums.get("abs", 0.0), sums.get("walk", 0.0)]
        levels = tuple(level for level, _ in pinball)
        live.rows[key] = HorizonSums(levels, totals, sums.get("since", math.inf))
    return live


def horizon_report(horizon: int, sums: HorizonSums) -> dict[str, Any]:
    """The means of one horizon's sums, as ``GET /v1/models/live`` shows them."""
    n = sums.count
    pinball = sums.pinball
    levels = sorted(pinball)
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
        "pinball": _mean(sum(pinball.values()), n * len(levels)),
        "pinball_by_level": {repr(level): _mean(pinball[level], n) for level in levels},
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
