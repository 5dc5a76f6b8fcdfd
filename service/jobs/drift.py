"""Retrain on drift: a champion's live coverage over its last settled forecasts, checked against a band.

The store keeps live scores as running sums (``service/live/sums.py``), not
one entry per forecast. ``DriftWatch`` reads them at each check and keeps, per
champion, the counts it saw at earlier checks: the coverage over the last
``window`` settled forecasts is the share inside the band among those settled
since the newest earlier check at least ``window`` forecasts ago (so over at
least ``window`` of them, and at most what settled between two checks more).
Horizon 1 is read: its outcomes do not overlap. A coverage outside the band
starts a retrain, at most one per ``cooldown_seconds``, with its reason.

So does a shadow that beats a champion live: where the champion's sessions and
their shadow settled the same 1-step forecasts, the kept paired differences of
pinball loss (``service/live/pairs.py``) are tested by a one-sided
Diebold-Mariano test, and a p-value of the shadow's loss being lower below
``level`` (LATENTCAST_RETRAIN_LEVEL, the level a challenger is promoted at) is
a reason too.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from latentcast.errors import ConfigError
from service.config import Settings
from service.live.pairs import PairedLosses
from service.live.sums import LiveSums
from training.significance import diebold_mariano

HORIZON = 1


@dataclass(frozen=True)
class DriftRule:
    """Coverage band, window of settled forecasts and cooldown between drift retrains."""

    low: float = 0.70
    high: float = 0.90
    window: int = 500
    cooldown_seconds: float = 86_400.0
    level: float = 0.10  # a shadow beats a champion live below this one-sided p-value

    @classmethod
    def of(cls, settings: Settings) -> DriftRule:
        if settings.drift_low >= settings.drift_high:
            raise ConfigError(
                f"LATENTCAST_DRIFT_LOW ({settings.drift_low}) must be below "
                f"LATENTCAST_DRIFT_HIGH ({settings.drift_high})"
            )
        return cls(
            settings.drift_low,
            settings.drift_high,
            settings.drift_window,
            settings.drift_cooldown_seconds,
            settings.retrain_level,
        )


@dataclass
class DriftWatch:
    """The drift checks of one scheduler: the counts seen per champion, and when drift last started a retrain."""

    rule: DriftRule
    clock: Callable[[], float] = time.time
    seen: dict[tuple[str, str], deque[tuple[int, int]]] = field(default_factory=dict)
    started: float | None = None

    def check(self, live: LiveSums, champions: dict[str, str], paired: PairedLosses | None = None) -> str | None:
        """The reason to retrain now, or None: a champion's coverage out of the band, or a shadow that beats it
        live (of ``paired``), outside the cooldown."""
        reasons = [] if paired is None else self.beaten(paired, champions)
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

    def beaten(self, paired: PairedLosses, champions: dict[str, str]) -> list[str]:
        """Why each champion beaten live by a shadow at ``rule.level`` is (one-sided DM on 1-step differences)."""
        reasons = []
        for model, shadow, horizon in sorted(paired.kept):
            mode = next((m for m, v in champions.items() if v == model), None)
            if mode is None or horizon != HORIZON:
                continue
            d, per_time = paired.series((model, shadow, horizon))  # the champion's loss less the shadow's
            if len(d) < 2 * HORIZON + 1:
                continue  # too few to test
            test = diebold_mariano(d, np.zeros_like(d), HORIZON)
            if test.p_higher < self.rule.level:
                reasons.append(
                    f"{mode} champion {model}: its shadow {shadow} had a lower pinball loss on the 1-step "
                    f"forecasts both settled (one-sided Diebold-Mariano over {test.n} "
                    f"{'times' if per_time else 'forecasts'}, p {test.p_higher:.3g} < {self.rule.level:g})"
                )
        return reasons


async def read_live(settings: Settings) -> tuple[LiveSums, dict[str, str], PairedLosses]:
    """The live sums and paired losses of the shared store, and the registry's champions."""
    from service.stores import build_store
    from training.registry import Registry

    store = build_store(settings)
    try:
        live = await store.live_sums()
        paired = await store.paired_losses()
    finally:
        await store.close()
    registry = Registry(settings.artifacts)
    champions = {mode: v for mode in ("ar", "latent") if (v := registry.champion(mode)) is not None}
    return live, champions, paired


def check_drift(settings: Settings, watch: DriftWatch) -> str | None:
    """One scheduled check against the store named by ``settings`` (a shared one: Redis)."""
    live, champions, paired = asyncio.run(read_live(settings))
    return watch.check(live, champions, paired)
