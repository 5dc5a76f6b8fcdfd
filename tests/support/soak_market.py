"""The soak's market modes: the streams of one API key fed together, in bulk requests or WebSocket messages.

``MarketClient`` feeds each of its ``FaultyStream``s as the REST mode does (the
same batches, seqs and checks), but a round carries the next batch of every
stream still going in one ``POST /v1/observations`` (``via="bulk"``) or one
message on ``/v1/stream`` (``via="stream"``), sent through the package's client
as items with the seqs the soak chooses (``AsyncClient.append_items``,
``Feed.send_items``). At random, in each round:

- a stream's previous batch is sent again before its next one (a retry: the
  reply must be the one it got first);
- a batch starts a little before the stream's next seq, with the values applied there;
- a batch past the end of the stream's new batch (a gap) or one rewriting an
  observation already applied follows its batch in the same round: each must
  get a 409 naming the seq after that batch;
- the round's request is abandoned before its answer (bulk) or the WebSocket is
  cut while the message is in flight (stream), and the round is sent again: the
  service answers what it had applied from the stored replies.

Every other answer must be a 200 with the expected next seq.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from latentcast_client import ApiError, AsyncClient, ClientSettings, Feed, Item

from tests.support.soak_client import FaultRates, FaultyStream, wire

VIAS = ("bulk", "stream")
# the client's own retries (a server or store away for a moment): as patient as the REST mode's waits
TIMEOUT_SECONDS = 30.0
RETRIES = 20
BACKOFF_SECONDS = (0.05, 0.5)
GAP = 5  # the furthest a gapped batch starts past its stream's new batch


@dataclass
class _Round:
    """One stream's part of a round: its items in order, and what each must get."""

    stream: FaultyStream
    end: int  # the stream's next seq once its batch is applied
    items: list[Item] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)  # "retry", "batch" or "conflict", per item


class MarketClient:
    """The streams of one API key, fed together through ``via`` (bulk requests or one WebSocket)."""

    def __init__(self, streams: Sequence[FaultyStream], urls: Sequence[str], via: str, seed: int) -> None:
        assert via in VIAS, via
        self.streams = list(streams)
        self.urls = list(urls)
        self.via = via
        self.rng = random.Random(seed)
        self._last: dict[str, tuple[Item, dict[str, Any]]] = {}  # per session: its last batch and reply
        self._stopped: set[str] = set()  # sessions that got a wrong answer: they are fed no more

    async def run(self, deadline: float, rates: FaultRates, hold_last: asyncio.Event | None = None) -> None:
        """Feed every stream until all are acknowledged or the deadline passes; last batches wait for ``hold_last``."""
        key = self.streams[0].key
        async with contextlib.AsyncExitStack() as stack:
            settings = [ClientSettings(url, key, TIMEOUT_SECONDS, RETRIES, BACKOFF_SECONDS) for url in self.urls]
            clients = [await stack.enter_async_context(AsyncClient(one)) for one in settings]
            feed = None
            if self.via == "stream":
                feed = await stack.enter_async_context(self.rng.choice(clients).feed())
            while time.monotonic() < deadline:
                going = [s for s in self.streams if not s.done and s.session_id not in self._stopped]
                held = hold_last is not None and not hold_last.is_set()
                ready = [s for s in going if not (held and s.next_seq + rates.max_batch >= len(s.observations))]
                if not going:
                    return
                if not ready:
                    assert hold_last is not None
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(hold_last.wait(), timeout=max(0.0, deadline - time.monotonic()))
                    continue
                parts = [self._part(stream, rates) for stream in ready]
                answers = await self._send(clients, feed, parts, rates)
                if answers is None:
                    return
                self._check(parts, answers)

    def _part(self, stream: FaultyStream, rates: FaultRates) -> _Round:
        rng = stream.rng
        end = min(stream.next_seq + rng.randint(1, rates.max_batch), len(stream.observations))
        part = _Round(stream, end)
        last = self._last.get(stream.session_id)
        if last is not None and rng.random() < rates.retry:
            part.items.append(last[0])
            part.expected.append("retry")
            stream.stats.retries += 1
        seq = stream.next_seq
        if rng.random() < rates.overlap and seq > stream.warm:
            stream.stats.overlaps += 1
            seq = rng.randint(max(stream.warm, seq - rates.max_batch), seq - 1)
        part.items.append(Item(stream.session_id, seq, [wire(o) for o in stream.observations[seq:end]]))
        part.expected.append("batch")
        if rng.random() < rates.out_of_order:
            part.items.append(self._out_of_order(stream, end))
            part.expected.append("conflict")
            stream.stats.out_of_order += 1
        return part

    def _out_of_order(self, stream: FaultyStream, end: int) -> Item:
        """A gap past ``end`` or a rewrite of the observation before it: a 409 naming ``end`` either way."""
        if stream.rng.random() < 0.5:
            seq = end + stream.rng.randint(1, GAP)
            batch = stream.observations[seq : seq + 1] or stream.observations[-1:]
            return Item(stream.session_id, seq, [wire(o) for o in batch])
        changed = stream.observations[end - 1]
        rewritten = {**wire(changed), "close": changed.close * 1.01}
        if changed.high is not None:  # the close stays within the bar, as a real bar's does
            rewritten["high"] = max(changed.high, rewritten["close"])
        return Item(stream.session_id, end - 1, [rewritten])

    async def _send(
        self, clients: list[AsyncClient], feed: Feed | None, parts: list[_Round], rates: FaultRates
    ) -> list[dict[str, Any] | ApiError] | None:
        """The answers to the round's items; the round cut off once first, at random. None if it failed."""
        items = [item for part in parts for item in part.items]
        for part in parts:
            part.stream.stats.sent += sum(len(item.observations) for item in part.items)
        try:
            if self.rng.random() < rates.drop:
                cut, answers = await self._cut(clients, feed, items, rates.drop_after_seconds)
                parts[0].stream.stats.dropped += cut
                if answers is not None:
                    return answers
                for part in parts:  # sent again below
                    part.stream.stats.sent += sum(len(item.observations) for item in part.items)
            if feed is not None:
                return await feed.send_items(items)
            return await self.rng.choice(clients).append_items(items)
        except Exception as exc:  # the client gave up (the servers stayed away past its retries)
            parts[0].stream.stats.problems.append(f"a round of {len(items)} items failed: {exc!r}")
            return None

    async def _cut(
        self, clients: list[AsyncClient], feed: Feed | None, items: list[Item], after: float
    ) -> tuple[int, list[dict[str, Any] | ApiError] | None]:
        """Send the round and cut it off before its answer (it may or may not be applied): 1 if it was cut,
        and its answers if they came all the same (the feed sends a message again after a reconnection)."""
        wait = self.rng.uniform(0, after)
        if feed is not None:
            sending = asyncio.create_task(feed.send_items(items))
            await asyncio.sleep(wait)
            cut = not sending.done()
            if cut:
                feed.drop()
            return int(cut), await sending
        try:
            return 0, await asyncio.wait_for(self.rng.choice(clients).append_items(items), timeout=wait)
        except TimeoutError:
            return 1, None

    def _check(self, parts: list[_Round], answers: list[dict[str, Any] | ApiError]) -> None:
        at = 0
        for part in parts:
            stream = part.stream
            for item, expected in zip(part.items, part.expected, strict=True):
                answer = answers[at]
                at += 1
                problem = self._problem(part, item, expected, answer)
                if problem is not None:
                    stream.stats.problems.append(f"{stream.session_id}: {expected} at {item.seq}: {problem}")
                    self._stopped.add(stream.session_id)
                    break
                if expected == "conflict":
                    stream.stats.conflicts += 1
                elif expected == "batch":
                    assert isinstance(answer, dict)
                    stream.stats.applied += part.end - stream.next_seq
                    stream.next_seq = part.end
                    self._last[stream.session_id] = (item, answer)

    def _problem(self, part: _Round, item: Item, expected: str, answer: dict[str, Any] | ApiError) -> str | None:
        """What is wrong with ``answer`` to ``item``, or None."""
        if expected == "conflict":
            if isinstance(answer, ApiError) and answer.status == 409 and answer.details["expected_seq"] == part.end:
                return None
            return f"expected a 409 naming {part.end}, got {answer!r}"
        if isinstance(answer, ApiError):
            return f"refused: {answer!r}"
        if expected == "retry":
            first = self._last[item.session_id][1]
            return None if answer == first else "a retry got another reply"
        return None if answer["next_seq"] == part.end else f"next_seq {answer['next_seq']}, expected {part.end}"
