"""Retrain on drift: a champion's live coverage over its last settled forecasts, checked against a band.

The store keeps live scores as running sums (``service/live_sums.py``), not
one entry per forecast. ``DriftWatch`` reads them at each check and keeps, per
champion, the counts it saw at earlier checks: the coverage over the last
``window`` settled forecasts is the share inside the band among those settled
since the newest earlier check at least ``window`` forecasts ago (so over at
least ``window`` of them, and at most what settled between two checks more).
Horizon 1 is read: its outcomes do not overlap. A coverage outside the band
starts a retrain, at most one per ``cooldown_seconds``, with its reason.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from data.errors import ConfigError
from service.config import Settings
from service.live_sums import LiveSums

HORIZON = 1


@dataclass(frozen=True)
class DriftRule:
    """Coverage band, window of settled forecasts and cooldown between drift retrains."""

    low: float = 0.70
    high: float = 0.90
    window: int = 500
    cooldown_seconds: float = 86_400.0

    @classmethod
    def of(cls, settings: Settings) -> DriftRule:
        if settings.drift_low >= settings.drift_high:
            raise ConfigError(
                f"LATENTCAST_DRIFT_LOW ({settings.drift_low}) must be below "
                f"LATENTCAST_DRIFT_HIGH ({settings.drift_high})"
            )
        return cls(settings.drift_low, settings.drift_high, settings.drift_window, settings.drift_cooldown_seconds)


@dataclass
class DriftWatch:
    """The drift checks of one scheduler: the counts seen per champion, and when drift last started a retrain."""

    rule: DriftRule
    clock: Callable[[], float] = time.time
    seen: dict[tuple[str, str], deque[tuple[int, int]]] = field(default_factory=dict)
    started: float | None = None

    def check(self, live: LiveSums, champions: dict[str, str]) -> str | None:
        """The reason to retrain now, or None: a champion's coverage out of the band, outside the cooldown."""
        reasons = []
        sums = live.sums
        for mode, version in sorted(champions.items()):
            row = sums.get((version, mode, HORIZON))
            if row is None:
                continue
            n, inside = row.count, row.inside
            seen = self.seen.setdefault((version, mode), deque([(0, 0)]))  # first: since scoring began
            seen.append((n, inside))
            while len(seen) > 1 and seen[1][0] <= n - self.rule.window:
                seen.popleft()  # a later check already starts a window of enough forecasts
            start_n, start_inside = seen[0]
            settled = n - start_n
            if settled < self.rule.window or settled <= 0:
                continue
            coverage = (inside - start_inside) / settled
            if not self.rule.low <= coverage <= self.rule.high:
                reasons.append(
                    f"{mode} champion {version}: live coverage {coverage:.3f} over its last {settled} settled "
                    f"1-step forecasts, outside {self.rule.low:g}-{self.rule.high:g}"
                )
        if not reasons:
            return None
        now = self.clock()
        if self.started is not None and now - self.started < self.rule.cooldown_seconds:
            return None
        self.started = now
        return "; ".join(reasons)


async def read_live(settings: Settings) -> tuple[LiveSums, dict[str, str]]:
    """The live sums of the shared store, and the registry's champions."""
    from service.stores import build_store
    from training.registry import Registry

    store = build_store(settings)
    try:
        live = await store.live_sums()
    finally:
        await store.close()
    registry = Registry(settings.artifacts)
    champions = {mode: v for mode in ("ar", "latent") if (v := registry.champion(mode)) is not None}
    return live, champions


def check_drift(settings: Settings, watch: DriftWatch) -> str | None:
    """One scheduled check against the store named by ``settings`` (a shared one: Redis)."""
    live, champions = asyncio.run(read_live(settings))
    return watch.check(live, champions)
