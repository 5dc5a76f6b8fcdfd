"""``RequestGuard``: the body's type and bound, the request metrics and the security headers of every request."""

from __future__ import annotations

import email.message
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from latentcast.errors import LimitError, UnsupportedTypeError
from service.http.errors import forecast_error_response
from service.metrics import ServiceMetrics

UNMATCHED = "unmatched"
MAX_SHOWN_TYPE = 100


# an HTML page runs its own files only and talks only to this service: a script injected into a reply
# (a ticker label, an error message) could not run, nor send the key elsewhere, nor could the page be framed
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# anything else (JSON, a script, a stylesheet, an image) is never a document that may run or load anything
NOTHING_POLICY = "default-src 'none'; frame-ancestors 'none'"


def secured(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` with ``nosniff`` and a Content-Security-Policy, unless the response set its own:
    ``PAGE_POLICY`` for HTML, ``NOTHING_POLICY`` for the rest (ASGI header names are lower case)."""
    names = {name for name, _ in headers}
    if b"x-content-type-options" not in names:
        headers.append((b"x-content-type-options", b"nosniff"))
    if b"content-security-policy" not in names:
        html = any(name == b"content-type" and value.startswith(b"text/html") for name, value in headers)
        headers.append((b"content-security-policy", (PAGE_POLICY if html else NOTHING_POLICY).encode()))
    return headers


class RequestGuard:
    """Pure ASGI middleware: refuses bodies that are not JSON (415) or over ``max_body_bytes`` (413),
    times and counts requests, and gives every response ``nosniff`` and a Content-Security-Policy
    (``secured``): the page's, served at ``/`` or ``/static/index.html``, and any other's alike.

    ``HEAD`` is answered on every ``GET`` route, as monitors and link checkers expect: the route
    runs as for ``GET`` and its answer goes out without its body (a route without ``GET`` is 405).

    Every body the API reads is JSON: one sent as another type (or none) is
    refused whatever it holds, before any route reads it. A body without a
    Content-Length (chunked) is read up front, so that it is bounded too; API
    bodies are small JSON documents. A declared length is checked as it is: the
    server reads no more than it.
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
        head = scope["method"] == "HEAD"
        outer, scope = scope, {**scope, "method": "GET"} if head else scope

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": secured(list(message.get("headers", [])))}
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}  # a GET's answer, its headers and length, without its body
            await send(message)

        try:
            declared, chunked, content_type = _body_headers(scope)
            if (chunked or declared) and not is_json_type(content_type):
                shown = content_type.decode("latin-1")[:MAX_SHOWN_TYPE] if content_type else "none"
                refused = UnsupportedTypeError(
                    f"request bodies are JSON: send Content-Type application/json, not {shown}"
                )
                await forecast_error_response(refused)(scope, receive, send_with_status)
                return
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
            self.metrics.observe_request(outer["method"], path, status, time.perf_counter() - started)

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


def _body_headers(scope: Scope) -> tuple[int | None, bool, bytes | None]:
    """The request's declared body size (None if unknown), whether it is chunked, its content type."""
    declared, chunked, content_type = None, False, None
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                declared = None
        elif name == b"transfer-encoding":
            chunked = True
        elif name == b"content-type":
            content_type = value
    return declared, chunked, content_type


def is_json_type(content_type: bytes | str | None) -> bool:
    """Whether a body of ``content_type`` is JSON, as FastAPI decides it (strict: a missing type is not)."""
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    if content_type == "application/json":  # what nearly every client sends
        return True
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


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
