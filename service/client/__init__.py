"""The service's Python client: ``Client`` (blocking) and ``AsyncClient`` over HTTP, ``Feed`` over the WebSocket.

    from service.client import Client, ClientSettings

    with Client(ClientSettings("http://127.0.0.1:8000", api_key="...")) as client:
        ibm = client.open(history=[101.2, 101.9, 100.7], ticker="IBM")
        reply = client.append(ibm, [102.3])  # seq tracked by the session; retries are safe
        with client.feed() as feed:
            feed.send([(ibm, [103.0])])

``docs/streaming.md`` describes the calls and their guarantees.
"""

from __future__ import annotations

from service.client.asynchronous import ApiError, AsyncClient, ClientSettings, Item, Session
from service.client.feed import Feed
from service.client.sync import Client, SyncFeed

__all__ = ["ApiError", "AsyncClient", "Client", "ClientSettings", "Feed", "Item", "Session", "SyncFeed"]
