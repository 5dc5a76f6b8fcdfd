"""A batch the service applied before and no longer has the reply of: done, on every transport, the session past it."""

from __future__ import annotations

import asyncio
from typing import Any

from latentcast_client import AsyncClient, ClientSettings
from recorded import RecordedHttp, RecordedStream


def test_a_batch_answered_already_applied_is_done_and_moves_its_session_past_it() -> None:
    transport = RecordedHttp("applied")
    stream = RecordedStream("applied")

    async def run() -> tuple[Any, ...]:
        async with stream.serving() as url, AsyncClient(ClientSettings(url), transport=transport) as client:
            session = await client.open([101.2, 101.9, 100.7])
            await client.append(session, [102.3])
            await client.append(session, [103.0])
            # each time as a client that lost the replies of its last two batches sends the first again
            session.next_seq = 3
            alone = await client.append(session, [102.3])
            after_alone, session.next_seq = session.next_seq, 3
            in_bulk = await client.append_many([(session, [102.3])])
            after_bulk, session.next_seq = session.next_seq, 3
            async with client.feed() as feed:
                fed = await feed.send([(session, [102.3])])
            return alone, after_alone, in_bulk, after_bulk, fed, session.next_seq

    alone, after_alone, (in_bulk,), after_bulk, (fed,), after_fed = asyncio.run(run())
    assert transport.done() and stream.done()
    for reply in (alone, in_bulk, fed):
        assert reply == {
            "session_id": "session-1",
            "model": {"mode": "latent", "version": "version-1"},
            "next_seq": 4,
            "forecast": None,
            "already_applied": True,
        }
    assert after_alone == after_bulk == after_fed == 4
