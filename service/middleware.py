"""``RequestGuard``: the request body bound and the request metrics, around every request."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from data.errors import LimitError
from service.errors import forecast_error_response
from service.metrics import ServiceMetrics

UNMATCHED = "unmatched"


class RequestGuard:
    """Pure ASGI middleware: refuses bodies over ``max_body_bytes`` (413), times and counts requests.

    A body without a Content-Length (chunked) is read up front, so that it is
    bounded too; API bodies are small JSON documents. A declared length is
    checked as it is: the server reads no more than it.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, metrics: ServiceMetrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            declared = _declared_size(scope)
            if declared is not None and declared <= self.max_body_bytes:
                # the server reads no more than the declared length: nothing to count
                await self.app(scope, receive, send_with_status)
                return
            body = None if declared is not None else await self._bounded_body(receive)
            if body is None:
                what = f"{declared} bytes" if declared is not None else f"more than {self.max_body_bytes} bytes"
                error = LimitError(
                    f"request body is {what}; the limit is {self.max_body_bytes} bytes (LATENTCAST_MAX_BODY_BYTES)",
                    limit=self.max_body_bytes,
                )
                await forecast_error_response(error)(scope, receive, send_with_status)
                return
            await self.app(scope, _replay(body, receive), send_with_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", UNMATCHED)
            self.metrics.observe_request(scope["method"], path, status, time.perf_counter() - started)

    async def _bounded_body(self, receive: Receive) -> bytes | None:
        """The whole body of unknown length, or None if it is larger than the bound."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


def _declared_size(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then waits on the real one (for a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
