"""latentcast's Python client: ``Client`` (blocking) and ``AsyncClient`` over HTTP, ``Feed`` over the WebSocket.

    from latentcast_client import Client, ClientSettings

    with Client(ClientSettings("http://127.0.0.1:8000", api_key="...")) as client:
        ibm = client.open(history=[101.2, 101.9, 100.7], ticker="IBM")
        reply = client.append(ibm, [102.3])  # seq tracked by the session; retries are safe
        with client.feed() as feed:
            feed.send([(ibm, [103.0])])

Errors the service answers are ``ApiError``, of the subclass of their code
(``latentcast_client.errors``). The service's ``docs/streaming.md`` describes
the calls and their guarantees.
"""

from __future__ import annotations

from latentcast_client.asynchronous import AsyncClient
from latentcast_client.errors import (
    ApiError,
    AuthError,
    ConflictError,
    InvalidDataError,
    InvalidRequestError,
    LimitError,
    NotFoundError,
    QuotaError,
    UnavailableError,
)
from latentcast_client.feed import Feed
from latentcast_client.protocol import ClientSettings, Item, Session
from latentcast_client.sync import Client, SyncFeed

__all__ = [
    "ApiError",
    "AsyncClient",
    "AuthError",
    "Client",
    "ClientSettings",
    "ConflictError",
    "Feed",
    "InvalidDataError",
    "InvalidRequestError",
    "Item",
    "LimitError",
    "NotFoundError",
    "QuotaError",
    "Session",
    "SyncFeed",
    "UnavailableError",
]
