"""The service's refusals against its recorded replies: each the client's error of its code, nothing moved."""

from __future__ import annotations

import asyncio

import pytest
from latentcast_client import (
    ApiError,
    AsyncClient,
    AuthError,
    ClientSettings,
    ConflictError,
    InvalidDataError,
    InvalidRequestError,
    Item,
    NotFoundError,
    Session,
)
from recorded import RecordedHttp, RecordedStream

FAST = ClientSettings("http://recorded", backoff_seconds=(0.0, 0.0))
KEY = "recorded-client-key-0123"


def test_refusals_are_the_errors_of_their_codes_and_leave_the_session_where_it_was() -> None:
    transport = RecordedHttp("errors")
    caught: list[ApiError] = []

    async def run() -> list[object]:
        async with AsyncClient(FAST, transport=transport) as client:
            session = await client.open([101.2, 101.9, 100.7])
            session.next_seq = 5  # a client that believes the session holds more than it does
            with pytest.raises(ConflictError) as gap:
                await client.append(session, [102.0])
            caught.append(gap.value)
            session.next_seq = 3
            items = await client.append_items(
                [Item(session.session_id, 3, [102.0]), Item(session.session_id, 3, [102.5])]
            )
            after_items = session.next_seq  # append_items moves no session: its caller does
            session.next_seq = 4
            for call in (
                lambda: client.append(session, [float("nan")]),
                lambda: client.session("no-such-session"),
                lambda: client.open([101.2], mode="garch"),
            ):
                with pytest.raises(ApiError) as refused:
                    await call()
                caught.append(refused.value)
            return [*items, after_items]

    applied, rewritten, next_seq = asyncio.run(run())
    assert transport.done()
    gap, nan, unknown, mode = caught
    assert isinstance(gap, ConflictError) and (gap.status, gap.reason, gap.expected_seq) == (409, "gap", 3)
    assert isinstance(applied, dict) and applied["next_seq"] == 4
    assert isinstance(rewritten, ConflictError) and rewritten.reason != "gap" and rewritten.status == 409
    assert next_seq == 3
    assert isinstance(nan, InvalidDataError) and nan.details == {"seq": 4} and "close is nan" in nan.message
    assert isinstance(unknown, NotFoundError) and unknown.status == 404
    assert isinstance(mode, InvalidRequestError) and mode.details["errors"][0]["field"] == "mode"


def test_a_missing_or_wrong_key_is_an_auth_error_over_http_and_over_the_websocket() -> None:
    transport = RecordedHttp("auth")
    stream = RecordedStream("auth")

    async def run() -> list[object]:
        out: list[object] = []
        async with stream.serving() as url:
            for key in (None, "not-the-key-0123456789", KEY):
                settings = ClientSettings(url, api_key=key, retries=0)
                async with AsyncClient(settings, transport=transport) as client:
                    try:
                        out.append(await client.open([101.2, 101.9]))
                    except ApiError as error:
                        out.append(error)
            async with AsyncClient(ClientSettings(url, retries=0), transport=transport) as client:
                try:
                    async with client.feed():
                        pass
                except ApiError as error:
                    out.append(error)
        return out

    missing, wrong, opened, handshake = asyncio.run(run())
    assert transport.done() and stream.done() and stream.connections == 1
    assert isinstance(missing, AuthError) and "missing API key" in missing.message
    assert isinstance(wrong, AuthError) and wrong.message == "unknown API key"
    assert isinstance(opened, Session) and opened.next_seq == 2
    assert isinstance(handshake, AuthError) and handshake.status == 401
