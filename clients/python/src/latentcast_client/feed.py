"""``Feed``: appends over one WebSocket (``/v1/stream``), many in flight, resent after a reconnection.

``send`` gives each batch the seq that follows the session's last batch sent,
sends the message without waiting for earlier ones to be answered, and returns
its items' replies when they come. When the connection drops, or a reply is
later than the timeout, the feed connects again and sends every message not
yet answered, in their order, with the same seqs and contents: the service
answers those it had applied with their stored replies (or, past the replies
it keeps, ``already_applied``, which is done as well), so nothing is applied
twice and nothing is skipped. A session's seq moves on only with a reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from latentcast_client.errors import ApiError, api_error
from latentcast_client.protocol import (
    ClientSettings,
    Item,
    Session,
    Wire,
    answers,
    backoff,
    bulk_items,
    dumps,
    error_answer,
    key_headers,
    loads,
    took_items,
)


@dataclass
class _Pending:
    """A message sent and not yet answered."""

    frame: bytes
    items: list[dict[str, Any]]
    batches: Sequence[tuple[Session, Sequence[Wire]]] | None  # None for items sent as they are
    reply: asyncio.Future[list[dict[str, Any] | ApiError]]


class Feed:
    """One WebSocket carrying appends for any of the caller's sessions; ``async with`` opens and closes it."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        scheme, rest = settings.base_url.split("://", 1)
        self.url = ("wss" if scheme == "https" else "ws") + "://" + rest.rstrip("/") + "/v1/stream"
        self.reconnections = 0
        self._ids = itertools.count()
        self._pending: dict[int, _Pending] = {}
        self._sent: dict[str, int] = {}  # per session: the seq after its last batch sent
        self._connection: ClientConnection | None = None
        self._receiver: asyncio.Task[None] | None = None
        self._reconnecting = asyncio.Lock()

    async def __aenter__(self) -> Feed:
        await self._connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._receiver is not None:
            self._receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._receiver
        if self._connection is not None:
            await self._connection.close()
        for pending in self._pending.values():
            pending.reply.cancel()

    async def send(self, batches: Sequence[tuple[Session, Sequence[Wire]]]) -> list[dict[str, Any] | ApiError]:
        """Apply each batch after its session's last batch sent; a reply or an ``ApiError`` per batch."""
        return await self._message(bulk_items(batches, self._sent), batches)

    async def send_items(self, items: Sequence[Item]) -> list[dict[str, Any] | ApiError]:
        """``items`` in one message, each with the seq it names: a reply or an ``ApiError`` each.

        As ``AsyncClient.append_items``: no session's seq is read or moved. Resent after a reconnection
        as any message is.
        """
        return await self._message([item.to_dict() for item in items], None)

    async def _message(
        self, items: list[dict[str, Any]], batches: Sequence[tuple[Session, Sequence[Wire]]] | None
    ) -> list[dict[str, Any] | ApiError]:
        message_id = next(self._ids)
        frame = dumps({"id": message_id, "items": items})
        reply: asyncio.Future[list[dict[str, Any] | ApiError]] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = _Pending(frame, items, batches, reply)
        connection = self._connection
        with contextlib.suppress(ConnectionClosed):  # the receiver reconnects and sends it again
            if connection is not None:
                await connection.send(frame.decode())
        try:
            return await reply
        finally:
            self._pending.pop(message_id, None)

    def drop(self) -> None:
        """Close the connection as a network failure would (for tests and the soak): the feed reconnects."""
        if self._connection is not None:
            self._connection.transport.abort()

    async def _connect(self) -> None:
        headers = key_headers(self.settings)
        for attempt in range(self.settings.retries + 1):
            try:
                self._connection = await connect(
                    self.url, additional_headers=headers, open_timeout=self.settings.timeout_seconds, max_size=None
                )
                break
            except InvalidStatus as exc:
                raise _refused(exc) from exc
            except (OSError, TimeoutError):
                if attempt == self.settings.retries:
                    raise
                await asyncio.sleep(backoff(self.settings, attempt))
        self._receiver = asyncio.create_task(self._receive(self._connection))

    async def _receive(self, connection: ClientConnection | None) -> None:
        assert connection is not None
        try:
            while True:
                waiting = self.settings.timeout_seconds if self._pending else None
                async with asyncio.timeout(waiting):
                    text = await connection.recv()
                self._answer(loads(text))
        except (ConnectionClosed, TimeoutError):
            await self._reconnect()
        except Exception as exc:  # a refused reconnection, a malformed frame: every waiting send gets it
            for pending in self._pending.values():
                if not pending.reply.done():
                    pending.reply.set_exception(exc)

    def _answer(self, frame: dict[str, Any]) -> None:
        pending = self._pending.get(frame["id"])
        if pending is None or pending.reply.done():
            return  # the answer to a message sent twice, already given
        if pending.batches is None:
            if "error" in frame:
                pending.reply.set_exception(api_error(frame["status"], frame["error"]))
            else:
                pending.reply.set_result(answers(frame["items"]))
            return
        if "error" in frame:
            for session, _ in pending.batches:
                self._sent.pop(session.session_id, None)
            pending.reply.set_exception(api_error(frame["status"], frame["error"]))
            return
        results = took_items(pending.batches, pending.items, frame["items"])
        for (session, _), result in zip(pending.batches, results, strict=True):
            if isinstance(result, ApiError):
                self._sent.pop(session.session_id, None)  # what follows it starts again from next_seq
        pending.reply.set_result(results)

    async def _reconnect(self) -> None:
        self.reconnections += 1
        if self._connection is not None:
            self._connection.transport.abort()
        await self._connect()
        assert self._connection is not None
        for message_id in sorted(self._pending):
            with contextlib.suppress(ConnectionClosed):
                await self._connection.send(self._pending[message_id].frame.decode())


def _refused(exc: InvalidStatus) -> ApiError:
    status = exc.response.status_code
    return error_answer(status, exc.response.body or b"", f"handshake refused with {status}")
