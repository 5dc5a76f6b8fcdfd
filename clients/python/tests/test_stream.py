"""The WebSocket feed against the service's recorded frames: many sessions a message, resent after a drop."""

from __future__ import annotations

import asyncio
from typing import Any

from latentcast_client import AsyncClient, ClientSettings, ConflictError, Item
from recorded import RecordedHttp, RecordedStream, recording

FAST = ClientSettings("http://recorded", backoff_seconds=(0.0, 0.0), timeout_seconds=5.0)


def test_a_message_not_answered_before_a_drop_is_sent_again_and_answered_once() -> None:
    transport = RecordedHttp("stream")
    stream = RecordedStream("stream", dropped=frozenset({1}))  # the connection drops before answering id 1

    async def run() -> tuple[Any, ...]:
        async with stream.serving() as url:
            settings = ClientSettings(url, backoff_seconds=(0.0, 0.0), timeout_seconds=5.0)
            async with AsyncClient(settings, transport=transport) as client:
                ibm = await client.open([101.2, 101.9, 100.7], ticker="IBM")
                msft = await client.open([27.1, 27.4, 27.0], ticker="MSFT")
                async with client.feed() as feed:
                    both = await feed.send([(ibm, [102.3]), (msft, [27.9])])
                    again = await feed.send([(ibm, [103.0])])
                    gap = await feed.send_items([Item(ibm.session_id, 9, [104.0])])
                    return both, again, gap, feed.reconnections, ibm.next_seq, msft.next_seq

    both, again, gap, reconnections, ibm_seq, msft_seq = asyncio.run(run())
    frames = recording("stream")["stream"]["frames"]
    assert transport.done() and stream.done()
    assert both == [item["reply"] for item in frames[0]["receive"]["items"]]
    assert again == [frames[2]["receive"]["items"][0]["reply"]]
    assert (reconnections, stream.connections) == (1, 2)
    assert (ibm_seq, msft_seq) == (5, 4)
    (refused,) = gap
    assert isinstance(refused, ConflictError) and (refused.reason, refused.expected_seq) == ("gap", 5)


def test_the_feed_speaks_to_the_services_stream_path() -> None:
    async def url() -> str:
        return AsyncClient(FAST).feed().url

    assert asyncio.run(url()) == "ws://recorded/v1/stream"
    secure = ClientSettings("https://forecasts.example/")

    async def secure_url() -> str:
        return AsyncClient(secure).feed().url

    assert asyncio.run(secure_url()) == "wss://forecasts.example/v1/stream"
