"""Registry retention: which versions a prune removes, and why each kept one stays.

Kept, per mode: the champion, the last ``previous_champions`` versions promoted
before it, every version a running process holds (``training.leases``: the
versions it has loaded and those its live sessions are pinned to), and every
challenger younger than ``challenger_days``. Everything else is removed through
``Registry.retire`` (renamed out of sight, then deleted). Broken folders are
left alone: they are listed by ``latentcast models`` for a person to look at.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from latentcast.errors import CheckpointError, NotFoundError
from models.config import MODES
from training.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionPolicy:
    """How many versions a registry keeps (defaults: ``Settings.retain_*``)."""

    previous_champions: int = 5
    challenger_days: float = 14.0


@dataclass(frozen=True)
class Decision:
    """One version and what a prune does with it: ``keep`` or not, and why."""

    version: str
    keep: bool
    reason: str


def plan(
    registry: Registry, policy: RetentionPolicy, held: Collection[str], now: datetime | None = None
) -> list[Decision]:
    """What a prune of ``registry`` would do with each readable version, oldest first.

    ``held``: the versions running processes have loaded or sessions are pinned to.
    """
    now = now or registry.clock()
    oldest_challenger = now - timedelta(days=policy.challenger_days)
    decisions = []
    for mode in MODES:
        champion = registry.champion(mode)
        promoted = [v for v in registry.promotions(mode) if v != champion]
        previous = set(promoted[-policy.previous_champions :]) if policy.previous_champions else set()
        for version in registry.versions(mode):
            name = version.version
            if name == champion:
                decisions.append(Decision(name, True, f"the {mode} champion"))
            elif name in previous:
                decisions.append(Decision(name, True, f"one of the last {policy.previous_champions} {mode} champions"))
            elif name in held:
                decisions.append(Decision(name, True, "loaded by a running process or pinned by a session"))
            elif (created := _created(version.created)) is None:
                decisions.append(Decision(name, True, "its manifest has no creation time to age it by"))
            elif created > oldest_challenger:
                decisions.append(Decision(name, True, f"younger than {policy.challenger_days:g} days"))
            elif name in promoted:
                decisions.append(
                    Decision(name, False, f"a {mode} champion before the last {policy.previous_champions}")
                )
            else:
                decisions.append(Decision(name, False, f"a challenger older than {policy.challenger_days:g} days"))
    return decisions


def prune(registry: Registry, decisions: list[Decision], held_now: Collection[str] = ()) -> list[Decision]:
    """Remove the versions ``decisions`` do not keep; the removed ones.

    ``held_now``: the versions held, read again just before removing, so that a
    session pinned while the plan was made still protects its version. The
    champions are read again for the same reason.
    """
    registry.remove_leftovers()
    champions = {v for v in registry.champions().values() if v is not None}
    removed = []
    for decision in decisions:
        if decision.keep or decision.version in held_now or decision.version in champions:
            continue
        try:
            registry.retire(decision.version)
        except NotFoundError:
            continue  # removed by another prune meanwhile
        except (CheckpointError, OSError) as exc:
            log.warning("could not remove %s: %s", decision.version, exc)
            continue
        log.info("removed %s: %s", decision.version, decision.reason)
        removed.append(decision)
    return removed


def _created(text: str) -> datetime | None:
    """A manifest's creation time, or None if it has none (written by hand, say) or none with a zone."""
    try:
        created = datetime.fromisoformat(text)
    except ValueError:
        return None
    return created if created.tzinfo is not None else None
