"""``Client``: ``AsyncClient`` for code without an event loop, each call run to its end on a loop of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx

from latentcast_client.asynchronous import AsyncClient
from latentcast_client.errors import ApiError
from latentcast_client.feed import Feed
from latentcast_client.protocol import ClientSettings, Item, Session, Wire


class Client:
    """The HTTP API, blocking: the same calls, seq tracking and safe retries as ``AsyncClient``."""

    def __init__(self, settings: ClientSettings | None = None, transport: httpx.AsyncBaseTransport | None = None):
        self._runner = asyncio.Runner()
        self._client = self._runner.run(_made(settings, transport))
        self.settings = self._client.settings

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._runner.run(self._client.aclose())
        self._runner.close()

    def open(
        self,
        history: Sequence[Wire] = (),
        mode: str | None = None,
        version: str | None = None,
        ticker: str | None = None,
    ) -> Session:
        return self._runner.run(self._client.open(history, mode, version, ticker))

    def session(self, session_id: str) -> Session:
        return self._runner.run(self._client.session(session_id))

    def append(self, session: Session, observations: Sequence[Wire]) -> dict[str, Any]:
        return self._runner.run(self._client.append(session, observations))

    def append_many(self, batches: Sequence[tuple[Session, Sequence[Wire]]]) -> list[dict[str, Any] | ApiError]:
        return self._runner.run(self._client.append_many(batches))

    def append_items(self, items: Sequence[Item]) -> list[dict[str, Any] | ApiError]:
        return self._runner.run(self._client.append_items(items))

    def forecast(self, observations: Sequence[Wire], mode: str | None = None, version: str | None = None) -> Any:
        return self._runner.run(self._client.forecast(observations, mode, version))

    def forecast_many(
        self, histories: Sequence[Sequence[Wire]], mode: str | None = None, version: str | None = None
    ) -> list[dict[str, Any] | ApiError]:
        return self._runner.run(self._client.forecast_many(histories, mode, version))

    def feed(self) -> SyncFeed:
        """A WebSocket feed of appends, used as ``with``."""
        return SyncFeed(self._runner, Feed(self.settings))


class SyncFeed:
    """``Feed``, blocking: ``send`` returns once its message is answered."""

    def __init__(self, runner: asyncio.Runner, feed: Feed) -> None:
        self._runner = runner
        self.feed = feed

    def __enter__(self) -> SyncFeed:
        self._runner.run(self.feed.__aenter__())
        return self

    def __exit__(self, *exc: object) -> None:
        self._runner.run(self.feed.aclose())

    def send(self, batches: Sequence[tuple[Session, Sequence[Wire]]]) -> list[dict[str, Any] | ApiError]:
        return self._runner.run(self.feed.send(batches))

    def send_items(self, items: Sequence[Item]) -> list[dict[str, Any] | ApiError]:
        return self._runner.run(self.feed.send_items(items))


async def _made(settings: ClientSettings | None, transport: httpx.AsyncBaseTransport | None) -> AsyncClient:
    # httpx's client binds to the loop it is first used on: it is made on the runner's
    return AsyncClient(settings, transport)
