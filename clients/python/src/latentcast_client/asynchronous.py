"""``AsyncClient``: the service's HTTP API from Python (httpx), with seqs tracked and retries made safe.

A ``Session`` remembers the seq its next batch must carry. An append sends it,
and on a timeout, a dropped connection or a 503 sends the same batch again,
same seq and same content: the service answers a retry with the reply the
first try got and applies the batch once, so a retry never applies a batch
twice and a batch is never skipped. The seq moves on only with a 200, or with
a 409 whose reason is ``already_applied`` (a batch applied before, its reply
no longer kept): that batch is done, and its reply says so
(``"already_applied": true``, ``forecast`` null).
Errors the service answers are ``ApiError`` (its subclass of their ``code``,
``latentcast_client.errors``); a bulk call returns one per refused item, in
place of its reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx

from latentcast_client.errors import ApiError
from latentcast_client.feed import Feed
from latentcast_client.protocol import (
    ClientSettings,
    Item,
    Session,
    Wire,
    a_gap,
    already_applied,
    answers,
    applied_reply,
    backoff,
    bulk_items,
    dumps,
    error_answer,
    key_headers,
    loads,
    took_items,
)

# statuses after which the same request may succeed: the store or the models are away for a moment
RETRIED_STATUSES = frozenset({502, 503, 504})
JSON = {"Content-Type": "application/json"}


class AsyncClient:
    """The HTTP API: open sessions, append (one or many), forecast, and a WebSocket ``feed``."""

    def __init__(self, settings: ClientSettings | None = None, transport: httpx.AsyncBaseTransport | None = None):
        self.settings = settings or ClientSettings()
        self.http = httpx.AsyncClient(
            base_url=self.settings.base_url,
            headers=key_headers(self.settings),
            timeout=self.settings.timeout_seconds,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def open(
        self,
        history: Sequence[Wire] = (),
        mode: str | None = None,
        version: str | None = None,
        ticker: str | None = None,
    ) -> Session:
        """A new session warmed on ``history``. Not retried: a lost reply would leave a session unknown."""
        body: dict[str, Any] = {"history": list(history)}
        body |= {k: v for k, v in (("mode", mode), ("version", version), ("ticker", ticker)) if v is not None}
        reply = _checked(await self.http.post("/v1/sessions", content=dumps(body), headers=JSON))
        session = Session(reply["session_id"], reply["next_seq"], reply["model"])
        session.took(reply)
        return session

    async def session(self, session_id: str) -> Session:
        """A session opened before (by this client or another): it resumes from its ``next_seq``."""
        reply = await self._send("GET", f"/v1/sessions/{session_id}")
        session = Session(session_id, reply["next_seq"], reply["model"])
        session.took(reply)
        return session

    async def append(self, session: Session, observations: Sequence[Wire]) -> dict[str, Any]:
        """Apply ``observations`` after what ``session`` holds; its reply (the next forecast).

        With ``resend_window``, a gap the service answers behind the session's seq (it lost appends it
        had acknowledged, as a Redis failover can) is mended: the kept observations from its
        ``expected_seq`` are sent again ahead of these, and each is applied once.
        """
        async with session.lock:
            path = f"/v1/sessions/{session.session_id}/observations"
            seq = session.next_seq
            try:
                reply = await self._send("POST", path, {"seq": seq, "observations": list(observations)})
            except ApiError as error:
                if already_applied(error):  # a retry of a batch applied while its reply was lost: done
                    return applied_reply(session, seq + len(observations))
                lost = session.resend_from(int(error.details.get("expected_seq", -1))) if a_gap(error) else None
                if lost is None:
                    raise
                seq = session.next_seq - len(lost)
                reply = await self._send("POST", path, {"seq": seq, "observations": [*lost, *observations]})
            session.took(reply)
            session.keep(observations, self.settings.resend_window)
            return reply

    async def append_many(self, batches: Sequence[tuple[Session, Sequence[Wire]]]) -> list[dict[str, Any] | ApiError]:
        """Each batch applied after what its session holds, in one request: a reply or an ``ApiError`` each.

        A session may appear more than once: its batches follow each other. The caller sends one
        ``append_many`` at a time for a given session. With ``resend_window``, the sessions the service
        answers with a gap behind them are mended as ``append`` mends one, in one more request.
        """
        items = bulk_items(batches, {})
        reply = await self._send("POST", "/v1/observations", {"items": items})
        results = took_items(batches, items, reply["items"])
        if self.settings.resend_window:
            await self._mend_gaps(batches, results)
            for (session, observations), result in zip(batches, results, strict=True):
                if not isinstance(result, ApiError):
                    session.keep(observations, self.settings.resend_window)
        return results

    async def _mend_gaps(
        self, batches: Sequence[tuple[Session, Sequence[Wire]]], results: list[dict[str, Any] | ApiError]
    ) -> None:
        """Send again, in one bulk request, each session whose first refused batch was a gap behind it: its
        kept observations from ``expected_seq`` ahead of that batch, then its later batches; ``results``
        takes their answers in place."""
        mended: dict[str, list[int]] = {}  # session id -> the indices of its batches sent again
        items: list[dict[str, Any]] = []
        for index, ((session, observations), result) in enumerate(zip(batches, results, strict=True)):
            if session.session_id in mended:  # refused too, behind its session's first refused batch
                mended[session.session_id].append(index)
                items.append({"session_id": session.session_id, "seq": -1, "observations": list(observations)})
                continue
            if not (isinstance(result, ApiError) and a_gap(result)):
                continue
            lost = session.resend_from(int(result.details.get("expected_seq", -1)))
            if lost is not None:
                mended[session.session_id] = [index]
                seq = session.next_seq - len(lost)
                items.append({"session_id": session.session_id, "seq": seq, "observations": [*lost, *observations]})
        if not items:
            return
        seqs: dict[str, int] = {}
        for item in items:  # the later batches follow the first at the seqs it leads to
            item["seq"] = item["seq"] if item["seq"] >= 0 else seqs[item["session_id"]]
            seqs[item["session_id"]] = item["seq"] + len(item["observations"])
        reply = await self._send("POST", "/v1/observations", {"items": items})
        order = sorted(i for indices in mended.values() for i in indices)
        resent = [batches[i] for i in order]
        for index, result in zip(order, took_items(resent, items, reply["items"]), strict=True):
            results[index] = result

    async def append_items(self, items: Sequence[Item]) -> list[dict[str, Any] | ApiError]:
        """``items`` in one bulk request, each with the seq it names: a reply or an ``ApiError`` each.

        For resending what was sent before, replaying, or a test of the seq rules (a gap, a rewrite):
        the service answers each item by its rules, and no ``Session`` moves on.
        """
        reply = await self._send("POST", "/v1/observations", {"items": [item.to_dict() for item in items]})
        return answers(reply["items"])

    async def forecast(self, observations: Sequence[Wire], mode: str | None = None, version: str | None = None) -> Any:
        """The forecast after a whole history (stateless)."""
        return await self._send("POST", "/v1/forecast", _choice(mode, version) | {"observations": list(observations)})

    async def forecast_many(
        self, histories: Sequence[Sequence[Wire]], mode: str | None = None, version: str | None = None
    ) -> list[dict[str, Any] | ApiError]:
        """A forecast after each history, in one request: a reply or an ``ApiError`` each."""
        items = [_choice(mode, version) | {"observations": list(h)} for h in histories]
        reply = await self._send("POST", "/v1/forecast", {"items": items})
        return answers(reply["items"])

    def feed(self) -> Feed:
        """A WebSocket feed of appends, used as ``async with``."""
        return Feed(self.settings)

    async def _send(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON reply, the same request sent again after a timeout, a dropped connection or a 5xx that may pass."""
        for attempt in range(self.settings.retries + 1):
            last = attempt == self.settings.retries
            try:
                content = None if body is None else dumps(body)
                response = await self.http.request(method, path, content=content, headers=JSON if content else None)
            except httpx.TransportError:
                if last:
                    raise
            else:
                if response.status_code not in RETRIED_STATUSES or last:
                    return _checked(response)
            await asyncio.sleep(backoff(self.settings, attempt))
        raise AssertionError("unreachable: the last attempt returns or raises")


def _choice(mode: str | None, version: str | None) -> dict[str, Any]:
    return {k: v for k, v in (("mode", mode), ("version", version)) if v is not None}


def _checked(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise error_answer(response.status_code, response.content, response.text[:200])
    return loads(response.content)
