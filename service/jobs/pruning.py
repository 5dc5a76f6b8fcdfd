"""Retention as configured: the registry prune, old job reports and logs, stale cached prices.

``latentcast registry prune`` and every retrain job (once it concludes) run
``prune_all``. The versions held are read from the running processes' leases
(``training.leases``) and, with the Redis store, from the sessions in Redis:
those outlive the processes that opened them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from service.config import Settings
from service.stores import build_store
from training.jobs import JOB_PATTERN
from training.leases import Leases
from training.registry import Registry
from training.retention import Decision, RetentionPolicy, plan, prune

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class Removal:
    """A file or version a prune removes (or would remove, in a dry run), and why."""

    what: str
    reason: str


def policy_of(settings: Settings) -> RetentionPolicy:
    return RetentionPolicy(settings.retain_previous_champions, settings.retain_challenger_days)


def held_versions(settings: Settings, artifacts: Path) -> set[str]:
    """The versions no prune may remove now: in the leases, and pinned by Redis sessions."""
    held = Leases(artifacts).held()
    if settings.store == "redis":
        held.update(asyncio.run(_redis_pins(settings)))
    return held


async def _redis_pins(settings: Settings) -> set[str]:
    store = build_store(settings)
    try:
        return set(await store.versions_in_use())
    finally:
        await store.close()


def prune_all(settings: Settings, artifacts: Path, dry_run: bool = False) -> list[Removal]:
    """Apply every retention of ``settings`` to ``artifacts``; what was (or would be) removed."""
    registry = Registry(artifacts)
    decisions = plan(registry, policy_of(settings), held_versions(settings, artifacts))
    dropped = [d for d in decisions if not d.keep]
    if not dry_run:
        # held versions read again just before removing: a session opened on one meanwhile keeps it
        dropped = prune(registry, decisions, held_versions(settings, artifacts))
    removals = [_removal(d) for d in dropped]
    removals += old_files(artifacts / "jobs", settings.retain_job_days, "a finished job's report or log", dry_run)
    cache = artifacts / "cache" / "yfinance"
    removals += old_files(cache, settings.retain_cache_days, "cached prices no retrain refreshed", dry_run)
    return removals


def _removal(decision: Decision) -> Removal:
    return Removal(decision.version, decision.reason)


def old_files(folder: Path, days: float, what: str, dry_run: bool) -> list[Removal]:
    """The files of ``folder`` unchanged for ``days``, removed unless ``dry_run``.

    A job report is rewritten at every stage of its job, so one unchanged for
    days is a finished job's; a report whose log is younger is kept with it.
    """
    if not folder.is_dir():
        return []
    oldest = time.time() - days * SECONDS_PER_DAY
    removals = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.stat().st_mtime > oldest:
            continue
        stem = path.name.split(".", 1)[0]
        if JOB_PATTERN.match(stem) and any(p.stat().st_mtime > oldest for p in folder.glob(f"{stem}.*")):
            continue
        removals.append(Removal(f"{folder.name}/{path.name}", f"{what}, older than {days:g} days"))
        if not dry_run:
            path.unlink(missing_ok=True)
    return removals
