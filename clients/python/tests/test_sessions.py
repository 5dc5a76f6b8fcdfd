"""Sessions over HTTP against the service's recorded replies: seqs tracked, a lost reply sent again, bulk calls."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from latentcast_client import AsyncClient, ClientSettings, InvalidDataError
from recorded import RecordedHttp, recording

# retries without waiting: the recorded service answers at once
FAST = ClientSettings("http://recorded", backoff_seconds=(0.0, 0.0))


def replies() -> list[Any]:
    return [exchange["response"]["body"] for exchange in recording("sessions")["http"]]


def test_sessions_track_their_seq_and_a_lost_reply_is_sent_again_with_the_same_seq() -> None:
    transport = RecordedHttp("sessions", lost=frozenset({2}))  # the first append's reply is lost

    async def run() -> tuple[Any, ...]:
        async with AsyncClient(FAST, transport=transport) as client:
            ibm = await client.open([101.2, 101.9, 100.7, 102.3], ticker="IBM")
            msft = await client.open([27.1, 27.4, 27.0, 27.9], mode="latent", ticker="MSFT")
            opened = (ibm.session_id, ibm.next_seq, ibm.forecast, msft.model)
            appended = await client.append(ibm, [103.0])
            resumed = await client.session(ibm.session_id)
            many = await client.append_many([(ibm, [102.1]), (msft, [28.3, 28.0])])
            return opened, appended, resumed, many, ibm, msft

    opened, appended, resumed, many, ibm, msft = asyncio.run(run())
    recorded = replies()
    assert transport.position == 6  # every exchange of the sessions, in order
    assert opened == ("session-1", 4, recorded[0]["forecast"], {"mode": "latent", "version": "version-1"})
    assert appended == recorded[3] and appended["next_seq"] == 5
    assert (resumed.session_id, resumed.next_seq, resumed.forecast) == ("session-1", 5, recorded[4]["forecast"])
    assert many == [item["reply"] for item in recorded[5]["items"]]
    assert (ibm.next_seq, msft.next_seq) == (6, 6)
    assert ibm.forecast == recorded[5]["items"][0]["reply"]["forecast"]


def test_stateless_forecasts_answer_each_history_or_its_error() -> None:
    transport = RecordedHttp("sessions")
    transport.position = 6  # the stateless calls, after the sessions'

    async def run() -> tuple[Any, list[Any]]:
        async with AsyncClient(FAST, transport=transport) as client:
            one = await client.forecast([101.2, 101.9, 100.7])
            return one, await client.forecast_many([[101.2, 101.9], [101.2, math.nan]])

    one, many = asyncio.run(run())
    assert transport.done()
    assert one == replies()[6] and len(one["forecast"]["price"]) == len(one["forecast"]["horizons"])
    assert many[0] == replies()[7]["items"][0]["reply"]
    assert isinstance(many[1], InvalidDataError) and many[1].status == 422
    assert "close is nan" in many[1].message
