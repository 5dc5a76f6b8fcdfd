"""Retention: a year of weekday retrains stays bounded; pinned and held versions survive; a killed prune is harmless."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from models.config import MODES
from service.stores.memory import MemorySessionStore
from service.stores.records import SessionRecord, StoreLimits
from tests.factories import tiny_checkpoint
from training.leases import Leases
from training.registry import Registry
from training.retention import RetentionPolicy, plan, prune

POLICY = RetentionPolicy(previous_champions=3, challenger_days=7)
ROOT = Path(__file__).resolve().parents[2]


class Calendar:
    """A clock advanced by hand, one weekday at a time."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 5, 22, 0, tzinfo=UTC)  # a Monday

    def __call__(self) -> datetime:
        return self.now

    def next_weekday(self) -> None:
        self.now += timedelta(days=1)
        while self.now.weekday() >= 5:
            self.now += timedelta(days=1)


def session(session_id: str, version: str) -> SessionRecord:
    return SessionRecord(
        session_id=session_id,
        owner="0123abcd",
        mode=version.split("-", 1)[0],
        version=version,
        ticker="IBM",
        next_seq=1,
        state=b"state",
        retained=(),
        created=0.0,
        updated=0.0,
    )


def folder_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


@pytest.mark.slow
def test_a_year_of_weekday_retrains_keeps_the_policy_count_and_every_pinned_version(tmp_path):
    calendar = Calendar()
    registry = Registry(tmp_path / "artifacts", clock=calendar)
    # the retrain itself is tested in test_retrain: a day's challengers are registered directly
    checkpoints = {mode: tiny_checkpoint(mode, seed=1) for mode in MODES}
    store = MemorySessionStore(
        StoreLimits(ttl_seconds=1e9, max_sessions=1000, retained_observations=1, retained_replies=1)
    )
    rng = random.Random(18)
    pinned: set[str] = set()
    days = 0
    while calendar.now.year == 2026:
        for mode in MODES:
            version = registry.register(checkpoints[mode]).version
            if registry.champion(mode) is None or rng.random() < 0.3:  # some challengers win
                registry.promote(version)
        # now and then a session opens on the champion of the day and stays open all year
        if days % 40 == 0:
            champion = registry.champion(MODES[(days // 40) % 2])
            assert champion is not None
            assert asyncio.run(store.create(session(f"s{days}", champion)))
            pinned.add(champion)
        held = set(asyncio.run(store.versions_in_use()))
        prune(registry, plan(registry, POLICY, held), held)
        calendar.next_weekday()
        days += 1
    assert days == 259  # the weekdays of 2026 from Monday 5 January

    kept = {v.version for v in registry.versions()}
    challengers_in_window = 6  # a week of weekdays, the day of the last prune included
    bound = len(MODES) * (1 + POLICY.previous_champions + challengers_in_window) + len(pinned)
    assert len(kept) <= bound
    assert pinned <= kept
    for version in pinned:
        assert registry.predictor(version).version == version
    assert registry.listing().broken == {}
    for mode in MODES:
        champion = registry.champion(mode)
        assert champion in kept and registry.predictor(str(champion)).version == champion
        previous = [v for v in registry.promotions(mode) if v != champion][-POLICY.previous_champions :]
        assert set(previous) <= kept
    # disk: the versions kept, against a version's size times the year's registrations
    one_version = folder_bytes(registry.path(next(iter(kept))))
    assert folder_bytes(registry.root) < one_version * (bound + 1) < one_version * days * len(MODES) / 10


def test_a_plan_says_why_it_keeps_or_removes_each_version(tmp_path):
    calendar = Calendar()
    registry = Registry(tmp_path / "artifacts", clock=calendar)
    checkpoint = tiny_checkpoint("latent", seed=1)
    made = []
    for _ in range(4):
        made.append(registry.register(checkpoint).version)
        calendar.now += timedelta(days=10)
    first, second, third, fourth = made
    registry.promote(first)
    registry.promote(third)
    policy = RetentionPolicy(previous_champions=0, challenger_days=15)
    decisions = {d.version: (d.keep, d.reason) for d in plan(registry, policy, held={second})}
    assert decisions == {
        first: (False, "a latent champion before the last 0"),
        second: (True, "loaded by a running process or pinned by a session"),
        third: (True, "the latent champion"),
        fourth: (True, "younger than 15 days"),
    }
    # held when the removal starts, though not when planned: kept
    removed = prune(registry, plan(registry, policy, held=set()), held_now={second})
    assert [d.version for d in removed] == [first]
    assert {v.version for v in registry.versions()} == {second, third, fourth}


def test_a_lease_holds_while_unexpired_or_while_its_process_runs(tmp_path):
    leases = Leases(tmp_path)
    leases.write({"latent-20260101T000000-a1b2c3"}, seconds=-1)  # expired, but this process runs
    assert leases.held() == {"latent-20260101T000000-a1b2c3"}
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = leases.folder / f"{os.uname().nodename}-{gone.stdout.strip()}.json"
    dead.write_text(leases.own_path().read_text().replace(f'"pid": {os.getpid()}', f'"pid": {gone.stdout.strip()}'))
    assert leases.held() == {"latent-20260101T000000-a1b2c3"}
    assert not dead.exists()  # expired and its process gone: deleted
    leases.release()
    assert leases.held() == set()


PRUNE_CHILD = """
import sys
from training.registry import Registry
from training.retention import RetentionPolicy, plan, prune
registry = Registry(sys.argv[1])
decisions = plan(registry, RetentionPolicy(previous_champions=0, challenger_days=0), held=set())
print("ready", flush=True)
prune(registry, decisions)
"""


@pytest.mark.slow
def test_a_prune_killed_at_a_random_point_leaves_the_registry_readable_and_the_champion_serving(tmp_path):
    registry = Registry(tmp_path / "artifacts")
    checkpoint: dict[str, Any] = tiny_checkpoint("latent", seed=1)
    versions = [registry.register(checkpoint).version for _ in range(60)]
    registry.promote(versions[-1])
    with subprocess.Popen(
        [sys.executable, "-c", PRUNE_CHILD, str(registry.root)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        time.sleep(random.uniform(0.0, 0.05))
        child.send_signal(signal.SIGKILL)
    assert child.returncode == -signal.SIGKILL
    listing = registry.listing()
    assert listing.broken == {}
    assert registry.champion("latent") == versions[-1]
    assert registry.predictor(versions[-1]).version == versions[-1]
    for version in listing.versions:
        registry.load(version.version)  # every version still visible is whole
    # the next prune finishes the work, leftovers of the killed one included
    prune(registry, plan(registry, RetentionPolicy(previous_champions=0, challenger_days=0), held=set()))
    assert [v.version for v in registry.versions()] == [versions[-1]]
    assert [p.name for p in (registry.root / "latent").iterdir() if p.is_dir()] == [versions[-1]]


def test_a_version_whose_manifest_has_no_creation_time_is_kept(tmp_path):
    registry = Registry(tmp_path / "artifacts")
    version = registry.register(tiny_checkpoint("latent", seed=1)).version
    manifest = registry.path(version) / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"created"', '"made"'))
    decisions = plan(registry, RetentionPolicy(previous_champions=0, challenger_days=0), held=set())
    assert [(d.version, d.keep, d.reason) for d in decisions] == [
        (version, True, "its manifest has no creation time to age it by")
    ]
