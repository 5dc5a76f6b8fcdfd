"""The soak's verdict on each session: its seq, forecast and retained observations against an offline replay.

After a soak, every session must hold every observation sent, each once: its
``next_seq`` is the number sent, its forecast equals the model run offline over
them, and what it retains equals their last ones (checked through a migration
to another version, which replays them). The servers' own count of applied
observations must equal the number sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from models.series import SeriesState
from tests.support.soak_client import FaultyStream
from tests.support.soak_setup import SoakPlan
from training.registry import Registry

# forecasts cross JSON and float32 state bytes: equal to an offline replay to this
ATOL = 1e-4


def verify(url: str, streams: list[FaultyStream], registry: Registry, plan: SoakPlan) -> tuple[list[str], list[int]]:
    """Each session against its offline replay, its retained observations through a migration."""
    mismatches: list[str] = []
    held: list[int] = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for stream in streams:
            mode = http.get(f"/v1/sessions/{stream.session_id}", headers=stream.headers).json()["model"]
            others = [v.version for v in registry.versions(mode["mode"]) if v.version != mode["version"]]
            check = check_against_replay(http, stream, registry, plan.retained, others[-1] if others else None)
            mismatches += check.mismatches
            held.append(check.next_seq)
    return mismatches, held


def applied_by(urls: Sequence[str]) -> float:
    """Observations the servers applied to sessions by appending (their metrics, added up)."""
    total = 0.0
    for url in urls:
        for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
            if line.startswith("latentcast_observations_applied_total{") and 'kind="append"' in line:
                total += float(line.split()[-1])
    return total


@dataclass(frozen=True)
class ReplayCheck:
    """A session beside its offline replay: how far it got, and whether they differ."""

    next_seq: int
    mismatches: list[str]
    migrated_to: str | None


def check_against_replay(
    http: httpx.Client,
    stream: FaultyStream,
    registry: Registry,
    retained_bound: int,
    migrate_to: str | None = None,
) -> ReplayCheck:
    """Compare the session's seq, forecast and retained observations with an offline replay.

    The retained observations are compared through a migration to ``migrate_to``
    (another version of the session's mode): the service replays what it retained
    through it, which must equal the offline replay of the last observations.
    """
    session = stream.session_id
    info = http.get(f"/v1/sessions/{session}", headers=stream.headers).json()
    total = len(stream.observations)
    problems = []
    if info["next_seq"] != total:
        problems.append(f"{session}: next_seq {info['next_seq']}, offline {total}")
    retained = min(total, retained_bound)
    if info["retained"] != retained:
        problems.append(f"{session}: retains {info['retained']} observations, should be {retained}")
    offline = registry.predictor(info["model"]["version"]).forecast_history(stream.observations)
    if not _same_forecast(info["forecast"], offline):
        problems.append(f"{session}: forecast differs from the offline replay")
    if migrate_to is not None and not problems:
        moved = http.post(f"/v1/sessions/{session}/migrate", json={"version": migrate_to}, headers=stream.headers)
        target = registry.predictor(migrate_to)
        first = total - retained
        replayed = target.forecast(target.advance(SeriesState(n_obs=first), stream.observations[first:]))
        body = moved.json()
        if moved.status_code != 200 or (body["replayed"], body["first_replayed_seq"]) != (retained, first):
            problems.append(f"{session}: migration to {migrate_to} answered {moved.status_code} {moved.text}")
        elif not _same_forecast(body["forecast"], replayed):
            problems.append(f"{session}: retained observations differ from the last {retained} sent")
    return ReplayCheck(info["next_seq"], problems, migrate_to)


def _same_forecast(served: dict[str, Any] | None, offline: Any) -> bool:
    if served is None or offline is None:
        return served is None and offline is None
    return served["as_of_seq"] == offline.as_of_seq and bool(
        np.allclose(served["log_return"], offline.log_return, atol=ATOL, rtol=0)
    )
