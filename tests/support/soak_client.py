"""A faulty client for soak tests: sessions fed real observations by a client that misbehaves.

Each ``FaultyStream`` feeds one session its observations in batches of 1 to
``max_batch``, in order, and at random:

- retries a batch that was answered: the reply must be the one it got first;
- starts a batch a little before the next seq, repeating the values applied there;
- drops the connection while a batch is in flight (the server may or may not
  have applied it), then sends the batch again as a client would;
- sends out of order: a batch past the next seq (a gap) or one that rewrites an
  observation already applied; each must get a 409 naming the expected seq.

Each batch goes through the package's client (``AsyncClient.append``) at the
seq the stream chooses, with no retries of the client's own: a server that is
down (refused connections, 503 while a store is away) is waited for here, and
counted, and the batch sent again, until the deadline. ``tests/support/soak_check.py``
then compares the session with an offline replay of the same observations.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from latentcast_client import ApiError, AsyncClient, Session

from models.series import Observation

# waits between sends to a server that is down: from the first to the last
BACKOFF_SECONDS = (0.05, 0.5)


@dataclass(frozen=True)
class FaultRates:
    """How often, per batch, the client misbehaves in each way."""

    retry: float = 0.2
    overlap: float = 0.1
    drop: float = 0.1
    out_of_order: float = 0.15
    max_batch: int = 5
    drop_after_seconds: float = 0.02  # a dropped request is abandoned after up to this long


@dataclass
class StreamStats:
    """What one stream did, and anything the server got wrong."""

    sent: int = 0  # observations sent, retries and overlaps included
    applied: int = 0  # observations acknowledged as applied (next_seq moved on)
    retries: int = 0
    overlaps: int = 0
    dropped: int = 0
    dropped_applied: int = 0  # dropped batches that the server applied without the client seeing the answer
    out_of_order: int = 0
    conflicts: int = 0  # 409s the out-of-order batches got
    waits: int = 0  # sends repeated because the server was down or its store away
    problems: list[str] = field(default_factory=list)

    def add(self, other: StreamStats) -> None:
        names = ("sent", "applied", "retries", "overlaps", "dropped", "dropped_applied", "out_of_order", "conflicts")
        for name in (*names, "waits"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.problems += other.problems


def wire(obs: Observation) -> dict[str, Any]:
    return {k: v for k, v in vars(obs).items() if v is not None}


class FaultyStream:
    """One session, its observations, and the client that feeds them."""

    def __init__(self, session_id: str, observations: Sequence[Observation], warm: int, key: str, seed: int) -> None:
        self.session_id = session_id
        self.observations = list(observations)
        self.next_seq = warm  # the last seq the server acknowledged
        self.warm = warm
        self.key = key or None
        self.headers = {"X-API-Key": key} if key else {}
        self.rng = random.Random(seed)
        self.stats = StreamStats()

    @property
    def done(self) -> bool:
        return self.next_seq >= len(self.observations)

    async def run(
        self,
        clients: Sequence[AsyncClient],
        deadline: float,
        rates: FaultRates,
        hold_last: asyncio.Event | None = None,
    ) -> None:
        """Feed the session until every observation is acknowledged or the deadline passes.

        With ``hold_last``, the last batch waits until that event is set (so that the
        stream is still going when something else happens, e.g. a new champion).
        """
        while not self.done and time.monotonic() < deadline:
            end = min(self.next_seq + self.rng.randint(1, rates.max_batch), len(self.observations))
            if hold_last is not None and end == len(self.observations):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(hold_last.wait(), timeout=max(0.0, deadline - time.monotonic()))
            seq = self.next_seq
            if self.rng.random() < rates.overlap and seq > self.warm:
                # start a little before the next seq, with the values applied already, then go on
                self.stats.overlaps += 1
                seq = self.rng.randint(max(self.warm, seq - rates.max_batch), seq - 1)
            if self.rng.random() < rates.out_of_order:
                await self._out_of_order(clients, end - self.next_seq)
            if self.rng.random() < rates.drop:
                await self._drop(clients, seq, end - seq, rates.drop_after_seconds)
            reply = await self._send(clients, seq, end - seq, deadline)
            if reply is None:
                return
            if reply["next_seq"] != end:
                self.stats.problems.append(f"{self.session_id}: batch at {seq} gave next_seq {reply['next_seq']}")
                return
            self.stats.applied += end - self.next_seq
            self.next_seq = end
            if self.rng.random() < rates.retry:
                self.stats.retries += 1
                again = await self._send(clients, seq, end - seq, deadline)
                if again is not None and again != reply:
                    self.stats.problems.append(f"{self.session_id}: retry of the batch at {seq} got another reply")

    async def _send(
        self, clients: Sequence[AsyncClient], seq: int, size: int, deadline: float
    ) -> dict[str, Any] | None:
        """The reply to the batch of ``size`` at ``seq``, sent again while the server is down."""
        batch = [wire(o) for o in self.observations[seq : seq + size]]
        wait = BACKOFF_SECONDS[0]
        while time.monotonic() < deadline:
            self.stats.sent += size
            try:
                return await self._append(self.rng.choice(clients), seq, batch)
            except httpx.TransportError:
                pass
            except ApiError as exc:
                if exc.status != 503:
                    self.stats.problems.append(f"{self.session_id}: batch at {seq}: {exc}")
                    return None
            self.stats.waits += 1
            await asyncio.sleep(wait)
            wait = min(wait * 2, BACKOFF_SECONDS[1])
        self.stats.problems.append(f"{self.session_id}: batch at {seq} not answered before the deadline")
        return None

    async def _drop(self, clients: Sequence[AsyncClient], seq: int, size: int, after: float) -> None:
        """Send the batch and hang up before the answer (it may or may not be applied).

        Counted as dropped only if the client did hang up first: an answer that came
        within the wait is a send like another.
        """
        self.stats.sent += size
        batch = [wire(o) for o in self.observations[seq : seq + size]]
        try:
            await asyncio.wait_for(self._append(self.rng.choice(clients), seq, batch), self.rng.uniform(0, after))
            return
        except (TimeoutError, httpx.TransportError, ApiError):
            self.stats.dropped += 1
        # did the server apply it all the same? (then the batch sent next is answered from the stored reply)
        await asyncio.sleep(after)
        with contextlib.suppress(httpx.TransportError, ApiError):
            info = await self.rng.choice(clients).session(self.session_id)
            self.stats.dropped_applied += info.next_seq > self.next_seq

    async def _out_of_order(self, clients: Sequence[AsyncClient], size: int) -> None:
        """A gap or a rewrite of what was applied: both must be a 409 naming the next seq."""
        expected = self.next_seq
        if self.rng.random() < 0.5 or expected == 0:
            seq = expected + self.rng.randint(1, 5)
            batch = [wire(o) for o in self.observations[seq : seq + size]] or [wire(self.observations[-1])]
        else:
            seq = expected - 1
            changed = self.observations[seq]
            rewritten = {**wire(changed), "close": changed.close * 1.01}
            if changed.high is not None:  # the close stays within the bar, as a real bar's does
                rewritten["high"] = max(changed.high, rewritten["close"])
            batch = [rewritten]
        self.stats.out_of_order += 1
        self.stats.sent += len(batch)
        try:
            reply = await self._append(self.rng.choice(clients), seq, batch)
        except httpx.TransportError:
            return  # the server is down: nothing was applied, nothing to check
        except ApiError as exc:
            if exc.status == 409 and exc.details.get("expected_seq") == expected:
                self.stats.conflicts += 1
            elif exc.status != 503:
                self.stats.problems.append(f"{self.session_id}: out-of-order seq {seq}: {exc}")
            return
        self.stats.problems.append(f"{self.session_id}: out-of-order seq {seq} was applied: {reply}")

    async def _append(self, client: AsyncClient, seq: int, batch: list[dict[str, Any]]) -> dict[str, Any]:
        """One ``POST /v1/sessions/{id}/observations`` at ``seq``: the soak chooses the seqs, not the client."""
        return await client.append(Session(self.session_id, seq, {}), batch)
