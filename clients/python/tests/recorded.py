"""The service, as recorded: its answers to the client's requests, replayed over HTTP and over the WebSocket.

Each file of ``recordings/`` holds the requests the client sends in one test
and the real service's answers to them (the service's test suite makes them,
``tests/service/client_recordings.py``, and fails when the service would
answer otherwise). ``RecordedHttp`` is an httpx transport and ``RecordedStream``
a local WebSocket server: each checks that the client sends the next recorded
request, exactly, and answers it with the recorded answer.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

RECORDINGS = Path(__file__).resolve().parent / "recordings"
KEY_HEADER = "X-API-Key"


def recording(name: str) -> dict[str, Any]:
    recorded: dict[str, Any] = json.loads((RECORDINGS / f"{name}.json").read_text())
    return recorded


def canonical(body: Any) -> str:
    """``body`` as comparable text (a NaN price equals itself)."""
    return json.dumps(body, sort_keys=True)


class RecordedHttp(httpx.MockTransport):
    """The recorded HTTP exchanges in order; ``lost`` are exchanges whose reply is lost once the service answered."""

    def __init__(self, name: str, lost: frozenset[int] = frozenset()) -> None:
        super().__init__(self.answer)
        self.exchanges: list[dict[str, Any]] = recording(name)["http"]
        self.lost = set(lost)
        self.position = 0

    def answer(self, request: httpx.Request) -> httpx.Response:
        assert self.position < len(self.exchanges), f"{request.method} {request.url.path}: no more were recorded"
        index, self.position = self.position, self.position + 1
        expected = self.exchanges[index]["request"]
        sent = json.loads(request.content) if request.content else None
        assert (request.method, request.url.path) == (expected["method"], expected["path"]), f"exchange {index}"
        assert canonical(sent) == canonical(expected.get("body")), f"exchange {index}: the body sent differs"
        assert request.headers.get(KEY_HEADER) == expected.get("headers", {}).get(KEY_HEADER), f"exchange {index}"
        if index in self.lost:
            raise httpx.ReadTimeout("the reply was lost", request=request)
        response = self.exchanges[index]["response"]
        return httpx.Response(response["status"], content=json.dumps(response["body"]).encode())

    def done(self) -> bool:
        return self.position == len(self.exchanges)


class RecordedStream:
    """A WebSocket server answering the recorded frames in order; after a frame in ``dropped`` it closes the
    connection unanswered (the client reconnects and sends again what was not answered)."""

    def __init__(self, name: str, dropped: frozenset[int] = frozenset()) -> None:
        self.stream: dict[str, Any] = recording(name)["stream"]
        self.dropped = set(dropped)
        self.position = 0
        self.connections = 0
        self.wrong: list[str] = []  # what the client sent that was not recorded (a server cannot raise in the test)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """The base URL of the server, while it serves."""
        server: Server
        async with serve(self.handle, "127.0.0.1", 0, process_request=self.handshake) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            yield f"http://127.0.0.1:{port}"

    def handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        self.connections += 1
        if request.headers.get(KEY_HEADER) != self.stream.get("headers", {}).get(KEY_HEADER):
            self.wrong.append(f"handshake with {KEY_HEADER} {request.headers.get(KEY_HEADER)!r}")
        refused = self.stream.get("refused")
        return None if refused is None else connection.respond(refused["status"], json.dumps(refused["body"]))

    async def handle(self, connection: ServerConnection) -> None:
        async for text in connection:
            frames = self.stream["frames"]
            if self.position >= len(frames) or canonical(json.loads(text)) != canonical(frames[self.position]["send"]):
                self.wrong.append(f"frame {self.position}: {text!r}")
                await connection.close()
                return
            index, self.position = self.position, self.position + 1
            if index in self.dropped:
                await connection.close()
                return
            await connection.send(json.dumps(frames[index]["receive"]))

    def done(self) -> bool:
        return not self.wrong and self.position == len(self.stream["frames"])
