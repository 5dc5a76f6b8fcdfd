"""``LimitedHttpProtocol``: uvicorn's httptools protocol with the limits of a front door.

uvicorn holds a connection as long as its client likes: no bound on the size of
a request's head (httptools gathers a header's value by concatenation, so a
header fed a megabyte at a time costs ever more), no time limit on sending it or
a body, and no bound on the number of connections. Each is set here, from the
settings (``LATENTCAST_MAX_HEADER_BYTES``, ``..._HEADER_TIMEOUT_SECONDS``,
``..._BODY_TIMEOUT_SECONDS``, ``..._MAX_CONNECTIONS``; docs/limits.md):

- a head (request line and headers) over the bound: 431, and the connection closed;
- a head not complete in time, counted from the connection's first byte or, on a
  kept-alive connection, from the next request's first byte: 408, closed;
- a body not complete in time, counted from the end of its head: 408, closed
  (the app, if it is waiting for the body, sees the client gone);
- a connection over the bound: 503, closed at once;
- a request that does not parse: 400.

Every one of these answers is the service's JSON error body.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from latentcast.errors import ConfigError
from service.config import RESERVED_FILES, Settings, get_settings
from service.http.errors import error_body

log = logging.getLogger(__name__)

STATUS_TEXT = {
    400: "Bad Request",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class ConnectionLimits:
    """What one connection may take: head size, head and body time, and how many connections at once."""

    max_header_bytes: int
    header_timeout_seconds: float
    body_timeout_seconds: float
    max_connections: int

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            settings.max_header_bytes,
            settings.header_timeout_seconds,
            settings.body_timeout_seconds,
            settings.max_connections,
        )


def allow_open_files(max_connections: int) -> None:
    """Raise this process's open-file limit to hold ``max_connections`` and the files a worker uses.

    ``ConfigError`` if the hard limit is lower: past it, accepting a connection fails with
    EMFILE and so does every file the worker opens (the registry's, Redis's).
    """
    needed = max_connections + RESERVED_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise ConfigError(
                f"LATENTCAST_MAX_CONNECTIONS={max_connections} needs {needed} open files and the limit is {hard}: "
                "lower it or raise the limit (ulimit -n)"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def error_response(status: int, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 response carrying the service's error body, closing the connection."""
    body = error_body(code, message)
    head = (
        f"HTTP/1.1 {status} {STATUS_TEXT[status]}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class LimitedHttpProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection, bounded in head size, head and body time, and in number."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = ConnectionLimits.of(get_settings())
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._in_head = False  # a request's head has begun and is not complete
        self._in_message = False  # a request has begun and its body is not complete
        self._head_bytes = 0
        self._began = 0  # requests begun during the chunk being parsed
        self._ended = 0  # requests completed during the chunk being parsed

    # the connection ----------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            message = f"the server holds its most connections ({self.limits.max_connections}); try again shortly"
            self._refuse(503, "unavailable", message)
            return
        # a connection that never sends a byte is held no longer than a slow head
        self._head_timer = self.loop.call_later(self.limits.header_timeout_seconds, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        idle = not self._in_message
        self._began = self._ended = 0
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        if not self._began:
            self._head_bytes += len(data)  # the head began in an earlier chunk
        elif idle and not self._ended:
            self._head_bytes = len(data)  # it began with this chunk
        else:
            # it began after another request in this chunk (pipelined): counted from the next chunk
            self._head_bytes = 0
        if self._head_bytes > self.limits.max_header_bytes:
            message = (
                f"request line and headers are over {self.limits.max_header_bytes} bytes (LATENTCAST_MAX_HEADER_BYTES)"
            )
            self._refuse(431, "headers_too_large", message)
        elif self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.header_timeout_seconds, self._head_timed_out)

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, "invalid_request", "the request is not valid HTTP/1.1")

    def handle_websocket_upgrade(self) -> None:
        self._cancel_timers()  # from here on the WebSocket protocol owns the connection
        super().handle_websocket_upgrade()

    # httptools callbacks -----------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = self._in_message = True
        self._began += 1

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._body_timer = self.loop.call_later(self.limits.body_timeout_seconds, self._body_timed_out)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_message = False
        self._ended += 1
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    # limits ------------------------------------------------------------------

    def _head_timed_out(self) -> None:
        self._head_timer = None
        message = f"request line and headers took over {self.limits.header_timeout_seconds:g} s"
        self._refuse(408, "request_timeout", f"{message} (LATENTCAST_HEADER_TIMEOUT_SECONDS)")

    def _body_timed_out(self) -> None:
        self._body_timer = None
        message = f"the request body took over {self.limits.body_timeout_seconds:g} s"
        self._refuse(408, "request_timeout", f"{message} (LATENTCAST_BODY_TIMEOUT_SECONDS)")

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer ``status`` unless a response is under way, and close the connection."""
        self._cancel_timers()
        if self.transport.is_closing():
            return
        # debug: under attack, a line per refused connection would be a load of its own
        log.debug("%s: %s", _peer(self.client), message)
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(error_response(status, code, message))
        if cycle is not None and not cycle.response_complete:
            # the app, waiting for the body or about to answer, sees the client gone
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "a client"


class LimitedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, its message size bounded by ``ws_max_size`` (``LATENTCAST_MAX_BODY_BYTES``),
    whose connections free what they read as soon as they are lost.

    A message over the bound is refused at its frame's header (close 1009), but the bytes the
    client sent before that sit in the connection's read buffer, held by a reference cycle
    (the refusal's exception, its traceback, the parser's frame, the connection) until a full
    garbage collection, which the service's collector settings make rare: a client opening
    connections and refusing to stop would grow the process by what each sent.
    """

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.conn.parser_exc = None
