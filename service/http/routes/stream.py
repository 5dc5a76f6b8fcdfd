"""``WS /v1/stream``: one connection carries appends for any of the caller's sessions, replies pushed back.

A client sends text frames ``{"id": <any JSON, echoed>, "items": [{"session_id", "seq", "observations"},
...]}``; each item is applied as ``POST /v1/observations`` applies it (the session rules on each item on
its own), and the service answers each message with one frame ``{"id", "items": [...]}``, its items'
statuses in order. A message that is not such an object gets ``{"id", "status", "error"}``.

Three tasks serve a connection: the reader puts messages, as they came, into a bounded queue (a client
that sends faster than the service applies waits, as TCP makes it); a message over
``LATENTCAST_MAX_BODY_BYTES`` closes the connection with 1009. The worker takes every message waiting,
parses each with the HTTP routes' reader and bounds (``parse_appends``), and applies their items as one
bulk append, so that the items of one session keep their order and the
sessions of one model version are stepped together; the sender writes the replies. The replies waiting
to be sent are bounded too: a client that does not read them is disconnected with ``SLOW_READER``, not
buffered without limit. The API key is checked at the handshake, with the HTTP routes' rules, and a
refused handshake gets the HTTP error they would get; so does a key holding
``LATENTCAST_MAX_STREAMS_PER_KEY`` connections already (429). Errors become frames here, and only here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, WebSocket
from fastapi.exceptions import RequestValidationError
from starlette.websockets import WebSocketDisconnect

from latentcast.errors import ForecastError, QuotaError
from service.config import Settings
from service.http.dependencies import Services, caller_of, services_of
from service.http.errors import forecast_error_response, item_error, validation_body
from service.http.json_reader import decode
from service.http.routes.lean import validated
from service.http.routes.observations import Reply, check_item_count, items_json, parse_appends
from service.http.schemas.bulk import Envelope
from service.sessions.bulk import AppendItem

log = logging.getLogger(__name__)
T = TypeVar("T")

router = APIRouter(tags=["sessions"])

# close codes of the application range (4000-4999): the replies waiting for this client reached
# LATENTCAST_STREAM_QUEUE
SLOW_READER = 4008
SLOW_READER_REASON = "replies not read: the send queue is full (LATENTCAST_STREAM_QUEUE)"
# the protocol's own code for a message too big to process (RFC 6455), the one uvicorn closes with too
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011


@dataclass(frozen=True)
class Message:
    """A message as read: its id, and its items as parsed (``parse_appends``), or the error of the whole."""

    id: Any
    items: list[tuple[int, Any]]
    error: Exception | None = None


@router.websocket("/v1/stream")
async def stream(websocket: WebSocket) -> None:
    try:
        svc, who = services_of(websocket), caller_of(websocket)
        held = hold_stream(svc, who.owner)
    except ForecastError as exc:
        await refuse(websocket, exc)
        return
    try:
        await websocket.accept()
        await serve(websocket, svc, who.owner)
    finally:
        held.release()


async def serve(websocket: WebSocket, svc: Services, owner: str) -> None:
    size = svc.settings.stream_queue
    inbound: asyncio.Queue[str | bytes] = asyncio.Queue(maxsize=size)
    outbound: asyncio.Queue[bytes] = asyncio.Queue(maxsize=size)
    tasks = [
        asyncio.create_task(read(websocket, svc.settings.max_body_bytes, inbound)),
        asyncio.create_task(work(svc, owner, inbound, outbound)),
        asyncio.create_task(send(websocket, outbound)),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            failure = task.exception()
            if isinstance(failure, asyncio.QueueFull):
                await close(websocket, tasks, SLOW_READER, SLOW_READER_REASON)
            elif isinstance(failure, MessageTooBig):
                await close(websocket, tasks, MESSAGE_TOO_BIG, str(failure))
            elif failure is not None and not isinstance(failure, WebSocketDisconnect):
                log.error("the stream ended on an unexpected error", exc_info=failure)
                await close(websocket, tasks, INTERNAL_ERROR, "internal error; the server log has the details")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class HeldStream:
    """One of a key's open WebSocket connections, counted until ``release``."""

    counts: Counter[str]
    owner: str

    def release(self) -> None:
        self.counts[self.owner] -= 1
        if self.counts[self.owner] <= 0:
            del self.counts[self.owner]


def hold_stream(svc: Services, owner: str) -> HeldStream:
    """Count a new connection of ``owner``; ``QuotaError`` if its key holds its most (only with keys)."""
    limit = svc.settings.max_streams_per_key
    if svc.settings.auth_enabled and svc.streams[owner] >= limit:
        raise QuotaError(
            f"this API key holds {limit} WebSocket connections, its most (LATENTCAST_MAX_STREAMS_PER_KEY): "
            "close one first"
        )
    svc.streams[owner] += 1
    return HeldStream(svc.streams, owner)


async def refuse(websocket: WebSocket, exc: ForecastError) -> None:
    """The handshake answered with the HTTP error (a 401 for a missing key), or closed if that cannot be sent."""
    try:
        await websocket.send_denial_response(forecast_error_response(exc))
    except RuntimeError:  # a server without the denial extension
        await websocket.close(code=1008, reason=exc.message)


class MessageTooBig(Exception):
    """A message over ``LATENTCAST_MAX_BODY_BYTES``: the connection is closed with 1009."""


async def read(websocket: WebSocket, max_bytes: int, inbound: asyncio.Queue[str | bytes]) -> None:
    """Put the client's messages, as they came, into ``inbound`` until it disconnects.

    They are parsed by ``work`` as it takes them: what waits is at most ``LATENTCAST_STREAM_QUEUE``
    messages of at most ``max_bytes`` each, not the objects they would parse into.
    """
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            frame = await websocket.receive()
            if frame["type"] == "websocket.disconnect":
                return
            raw = frame.get("text") or frame.get("bytes") or b""
            if len(raw) > max_bytes:  # uvicorn refuses it before it is read (`latentcast serve`); any server here
                raise MessageTooBig(
                    f"a message is {len(raw)} bytes; the limit is {max_bytes} bytes (LATENTCAST_MAX_BODY_BYTES)"
                )
            await inbound.put(raw)


async def read_message(raw: str | bytes, limits: Settings) -> Message:
    """The message ``raw`` parsed and its items validated, off the event loop when it is large (``decode``)."""
    try:
        return await decode(raw, lambda content: parse_message(content, limits), limits.inline_body_bytes)
    except RequestValidationError as exc:  # not JSON
        return Message(None, [], exc)


def parse_message(content: Any, limits: Settings) -> Message:
    """A message's id and its items as ``POST /v1/observations`` reads them, or the error of the whole."""
    message_id = content.get("id") if isinstance(content, dict) else None
    try:
        if isinstance(content, dict):
            content = {k: v for k, v in content.items() if k != "id"}
            check_item_count(content.get("items"), limits.max_bulk_items)
        envelope = validated(Envelope, content)
        return Message(message_id, parse_appends(envelope.items, limits.max_bulk_items, limits.max_batch))
    except (ForecastError, RequestValidationError) as exc:
        return Message(message_id, [], exc)


async def work(svc: Services, owner: str, inbound: asyncio.Queue[str | bytes], outbound: asyncio.Queue[bytes]) -> None:
    """Apply the waiting messages' items as one bulk append; a reply per message into ``outbound``."""
    while True:
        messages = [await read_message(await inbound.get(), svc.settings)]
        while not inbound.empty() and sum(len(m.items) for m in messages) < svc.settings.max_bulk_items:
            messages.append(await read_message(inbound.get_nowait(), svc.settings))
        batches = [item for m in messages for _, item in m.items if isinstance(item, AppendItem)]
        results: list[Reply | Exception] = list(await finished(svc.sessions.append_many(owner, batches)))
        for message in messages:
            mine = sum(isinstance(item, AppendItem) for _, item in message.items)
            outbound.put_nowait(reply_frame(message, results[:mine]))  # QueueFull: a slow reader
            results = results[mine:]


async def finished(batch: Coroutine[Any, Any, T]) -> T:
    """``batch`` run to its end even when the stream is torn down meanwhile (the client went away).

    Cancelled halfway, a bulk append could have committed its sessions but not yet counted them in
    the metrics; the stream's end waits for the batch instead, then the cancellation goes on.
    """
    running = asyncio.ensure_future(batch)
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        while not running.done():  # the teardown may cancel more than once: each time, wait on
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([running])  # a cancelled wait leaves the batch running
        raise


def reply_frame(message: Message, results: list[Reply | Exception]) -> bytes:
    """The frame answering ``message``: its items' statuses, or the error of the whole message."""
    head = b'{"id":' + orjson.dumps(message.id)
    if message.error is not None:
        return head + b"," + error_fields(message.error) + b"}"
    return head + b',"items":' + items_json(message.items, results) + b"}"


def error_fields(exc: Exception) -> bytes:
    """``"status":...,"error":{...}``: an error of a whole message, as HTTP would answer it."""
    if isinstance(exc, RequestValidationError):
        status, body = 422, validation_body(list(exc.errors()))
    else:
        status, body = item_error(exc)
    return orjson.dumps({"status": status, "error": body})[1:-1]


async def send(websocket: WebSocket, outbound: asyncio.Queue[bytes]) -> None:
    while True:
        frame = await outbound.get()
        await websocket.send_text(frame.decode())


async def close(websocket: WebSocket, tasks: list[asyncio.Task[None]], code: int, reason: str) -> None:
    """Send the close frame, once what is before it has gone out.

    Meanwhile the client's messages are read and dropped: a client blocked sending to us would not
    read the close frame either. A client that never reads is dropped by the keepalive pings."""
    for task in tasks:
        task.cancel()
    dropping = asyncio.create_task(drop_messages(websocket))
    try:
        with contextlib.suppress(Exception):  # the client may be gone already
            await websocket.close(code=code, reason=reason)
    finally:
        dropping.cancel()


async def drop_messages(websocket: WebSocket) -> None:
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass
