"""The soak with faults: many sessions streamed by a misbehaving client, then checked against offline replays.

``soak`` opens ``plan.sessions`` sessions (ar and latent in turn) on four API
keys of running services and feeds each real daily bars with random retries,
overlaps, dropped connections and out-of-order batches: one append per request
(``via="rest"``, ``tests/support/soak_client.py``), or the batches of a key's
sessions together in bulk requests or WebSocket messages (``bulk`` or
``stream``, ``tests/support/soak_market.py``). With ``retrain``, ``latentcast
retrain`` runs against the same registry while the sessions stream; the service
picks up its champions by polling, and the second half of the sessions opens on
them.

Then every session's seq, forecast and retained observations are compared with
an offline replay (the retained ones through a migration to another version),
and ``table`` says what was sent, applied, retried, dropped, refused, and
whether anything was lost or applied twice. ``tests/service/test_soak.py`` runs
it in small; ``python -m bench.soak`` at length.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from latentcast_client import AsyncClient, ClientSettings

from models.config import MODES
from models.series import Observation
from tests.support.soak_check import applied_by, verify
from tests.support.soak_client import FaultyStream, StreamStats, wire
from tests.support.soak_market import VIAS, MarketClient
from tests.support.soak_setup import KEYS, SoakPlan, bars, run_retrain_command
from training.registry import Registry

OPEN_TIMEOUT_SECONDS = 30.0
VIA_NAMES = {"rest": "one per request", "bulk": "in bulk requests", "stream": "in WebSocket messages"}


async def open_streams(
    url: str, plan: SoakPlan, observations: Sequence[list[Observation]], first: int
) -> list[FaultyStream]:
    """Open sessions ``first..first+len(observations)-1`` on the ar and latent champions in turn, each
    warmed on its first ``plan.warm`` bars, on the four keys in turn."""
    streams = []
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(AsyncClient(ClientSettings(url, key, OPEN_TIMEOUT_SECONDS))) for key in KEYS
        ]
        for i, obs in enumerate(observations, start=first):
            history = [wire(o) for o in obs[: plan.warm]]
            session = await clients[i % len(KEYS)].open(history, mode=MODES[i % len(MODES)])
            streams.append(FaultyStream(session.session_id, obs, plan.warm, KEYS[i % len(KEYS)], plan.seed * 1000 + i))
    return streams


async def feed(
    streams: Sequence[FaultyStream],
    urls: Sequence[str],
    plan: SoakPlan,
    deadline: float,
    hold_last: asyncio.Event | None = None,
    via: str = "rest",
) -> None:
    """Run every stream to its end (or the deadline), all at once; their last batches wait for ``hold_last``."""
    if via in VIAS:
        by_key: dict[str | None, list[FaultyStream]] = {}
        for stream in streams:
            by_key.setdefault(stream.key, []).append(stream)
        markets = [MarketClient(mine, urls, via, plan.seed * 1000 + k) for k, mine in enumerate(by_key.values())]
        await asyncio.gather(*(market.run(deadline, plan.rates, hold_last) for market in markets))
        return
    # the client's retries are the stream's own (it counts its waits for a server that is away)
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            key: [
                await stack.enter_async_context(AsyncClient(ClientSettings(url, key, OPEN_TIMEOUT_SECONDS, 0)))
                for url in urls
            ]
            for key in {s.key for s in streams}
        }
        await asyncio.gather(*(s.run(clients[s.key], deadline, plan.rates, hold_last) for s in streams))


@dataclass
class SoakResult:
    """The streams, their checks against offline replays, and what the servers counted."""

    streams: list[FaultyStream]
    held: list[int]  # next_seq of each session as the service reports it at the end
    mismatches: list[str]
    applied_by_servers: float | None  # None when a server restarted (its counters restarted too)
    seconds: float
    retrain: dict[str, object] | None = None
    via: str = "rest"

    @property
    def totals(self) -> StreamStats:
        total = StreamStats()
        for stream in self.streams:
            total.add(stream.stats)
        return total

    @property
    def expected_applied(self) -> int:
        return sum(len(s.observations) - s.warm for s in self.streams)

    @property
    def lost(self) -> int:
        """Observations acknowledged to the client that the session does not hold."""
        return sum(max(0, s.next_seq - c) for s, c in zip(self.streams, self.held, strict=True))

    @property
    def applied_twice(self) -> int:
        held = sum(max(0, c - len(s.observations)) for s, c in zip(self.streams, self.held, strict=True))
        counted = 0 if self.applied_by_servers is None else int(self.applied_by_servers) - self.expected_applied
        return max(held, counted, 0)


def table(store: str, servers: int, result: SoakResult) -> str:
    t = result.totals
    dropped = f"{t.dropped} ({t.dropped_applied})" if result.via == "rest" else str(t.dropped)
    rows = [
        ("store", f"{store}, {servers} server process{'es' if servers > 1 else ''}"),
        (
            "appends sent",
            {"rest": "one per request", "bulk": "in bulk requests", "stream": "over WebSockets"}[result.via],
        ),
        ("sessions", str(len(result.streams))),
        ("observations sent (retries, overlaps, drops included)", str(t.sent)),
        ("observations applied (acknowledged)", f"{t.applied} of {result.expected_applied}"),
        ("retried batches (same reply each time)", str(t.retries)),
        ("overlapping batches", str(t.overlaps)),
        ("dropped connections (of them applied all the same, REST only)", dropped),
        ("out-of-order batches (409s they got)", f"{t.out_of_order} ({t.conflicts})"),
        ("waits for a server or store that was away", str(t.waits)),
        ("client-side problems", str(len(t.problems))),
        ("mismatches vs offline replay", str(len(result.mismatches))),
        ("lost", str(result.lost)),
        ("applied twice", str(result.applied_twice)),
        ("seconds", f"{result.seconds:.1f}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def passed(result: SoakResult) -> bool:
    t = result.totals
    complete = t.applied == result.expected_applied and t.out_of_order == t.conflicts
    return complete and not (t.problems or result.mismatches or result.lost or result.applied_twice)


# the soak -----------------------------------------------------------------------


async def soak(urls: Sequence[str], registry: Registry, plan: SoakPlan, retrain: bool, via: str = "rest") -> SoakResult:
    """Open the sessions, stream them ``via`` REST, bulk or the WebSocket (with a retrain meanwhile if asked),
    check them against replays."""
    started = time.monotonic()
    deadline = started + plan.seconds
    observations = bars(plan)
    first_wave = observations[: plan.sessions // 2] if retrain else observations
    async with httpx.AsyncClient(base_url=urls[0], timeout=30) as client:
        streams = await open_streams(urls[0], plan, first_wave, 0)
        # with a retrain, the first sessions send their last batch only once the new champions serve
        promoted = asyncio.Event() if retrain else None
        tasks = [asyncio.create_task(feed(streams, urls, plan, deadline, promoted, via))]
        report: dict[str, object] | None = None
        if retrain:
            assert promoted is not None
            before = registry.champions()
            report = await asyncio.to_thread(run_retrain_command, registry.root)
            await wait_for_champions(client, report, deadline)
            promoted.set()
            report["seconds_into_soak"] = round(time.monotonic() - started, 1)
            report["streaming_meanwhile"] = sum(not s.done for s in streams)
            late = await open_streams(urls[0], plan, observations[len(first_wave) :], len(first_wave))
            versions = [
                (await client.get(f"/v1/sessions/{s.session_id}", headers=s.headers)).json()["model"]["version"]
                for s in late
            ]
            report["sessions_on_new_champions"] = sum(v not in before.values() for v in versions)
            streams += late
            tasks.append(asyncio.create_task(feed(late, urls, plan, deadline, via=via)))
        await asyncio.gather(*tasks)
    mismatches, held = await asyncio.to_thread(verify, urls[0], streams, registry, plan)
    applied = await asyncio.to_thread(applied_by, urls)
    return SoakResult(streams, held, mismatches, applied, time.monotonic() - started, report, via)


async def wait_for_champions(client: httpx.AsyncClient, job: dict[str, object], deadline: float) -> None:
    """Return once the service serves the champions the job promoted (its registry poll saw them)."""
    modes = job.get("modes", [])
    assert isinstance(modes, list)
    promoted = {m["mode"]: m["champion_after"] for m in modes if m["promoted"]}
    while time.monotonic() < deadline:
        served = (await client.get("/readyz")).json().get("champions", {})
        if all(served.get(mode) == version for mode, version in promoted.items()):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("the service did not pick up the new champions before the deadline")


def retrain_overlapped(job: dict[str, object]) -> bool:
    """The new champions were served while sessions streamed, and new sessions opened on them."""
    return bool(job.get("streaming_meanwhile")) and bool(job.get("sessions_on_new_champions"))
