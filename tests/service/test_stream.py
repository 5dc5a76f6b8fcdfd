"""``WS /v1/stream`` through a real ``latentcast serve``: the session rules per item, keys, slow readers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from latentcast_client import ApiError, AsyncClient, ClientSettings
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from websockets.uri import parse_uri

from models.series import Observation
from service.http.routes.stream import MessageTooBig, finished, read
from tests.service.test_bulk import ALICE, BOB, WARM, client, open_session, state
from tests.service.test_e2e import assert_close, env
from tests.service.test_json_reader import HUGE, INVALID
from tests.support.processes import ServiceProcess
from training.registry import Registry

# each test talks to a real latentcast serve process: the full tier runs them, make check does not
pytestmark = pytest.mark.slow

SLOW_READER = 4008


@pytest.fixture(scope="module")
def server(registry: Registry, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("stream") / "serve.log"
    with ServiceProcess(env(registry, api_keys=f"{ALICE},{BOB}", stream_queue="4"), log) as server:
        yield server


def ws_url(server: ServiceProcess) -> str:
    return server.url.replace("http://", "ws://") + "/v1/stream"


def test_each_item_of_a_message_gets_its_own_status(server, closes):
    with client(server, ALICE) as alice, client(server, BOB) as bob:
        fed, retried, gapped, invalid = (open_session(alice, closes) for _ in range(4))
        foreign = open_session(bob, closes)
        first_try = alice.post(f"/v1/sessions/{retried}/observations", json={"seq": WARM, "observations": [closes[20]]})
        before = {sid: state(alice, sid) for sid in (retried, gapped, invalid)} | {foreign: state(bob, foreign)}
        items = [
            {"session_id": fed, "seq": WARM, "observations": [closes[WARM]]},
            {"session_id": retried, "seq": WARM, "observations": [closes[20]]},
            {"session_id": gapped, "seq": WARM + 1, "observations": [closes[WARM]]},
            {"session_id": foreign, "seq": WARM, "observations": [closes[WARM]]},
            {"session_id": invalid, "seq": WARM, "observations": [0.0]},
            {"session_id": fed, "seq": WARM + 1, "observations": [closes[WARM + 1]]},
        ]
        with connect(ws_url(server), additional_headers={"X-API-Key": ALICE}) as ws:
            ws.send(json.dumps({"id": "bar-1", "items": items}))
            reply = json.loads(ws.recv(timeout=10))
            ws.send("not json")
            malformed = json.loads(ws.recv(timeout=10))
            ws.send(json.dumps({"id": 7, "items": {}}))
            not_a_list = json.loads(ws.recv(timeout=10))
        after = {sid: state(alice, sid) for sid in (retried, gapped, invalid)} | {foreign: state(bob, foreign)}
    assert reply["id"] == "bar-1"
    assert [item["status"] for item in reply["items"]] == [200, 200, 409, 404, 422, 200]
    assert reply["items"][1]["reply"] == first_try.json()
    assert reply["items"][2]["error"]["expected_seq"] == WARM
    assert reply["items"][4]["error"]["code"] == "invalid_data"
    assert reply["items"][5]["reply"]["next_seq"] == WARM + 2
    assert after == before
    assert malformed == {
        "id": None,
        "status": 422,
        "error": {
            "code": "invalid_request",
            "message": "body: JSON decode error",
            "errors": [{"field": "body", "message": "JSON decode error"}],
        },
    }
    assert not_a_list["id"] == 7 and not_a_list["error"]["message"] == "items: Input should be a valid list"


def test_the_feed_reads_its_messages_as_http_reads_bodies(server, closes):
    with client(server, ALICE) as alice:
        session = open_session(alice, closes)
        item = '{"session_id": "' + session + '", "seq": ' + str(WARM) + ', "observations": [%s]}'
        with connect(ws_url(server), additional_headers={"X-API-Key": ALICE}) as ws:
            ws.send('{"id": 1, "items": [' + item % HUGE + "]}")
            huge = json.loads(ws.recv(timeout=10))
            ws.send('{"id": 2, "items": [' + item % "NaN" + "]}")
            nan = json.loads(ws.recv(timeout=10))
        assert state(alice, session)["next_seq"] == WARM
    assert huge == {"id": None, "status": 422, "error": INVALID}
    assert nan["items"] == [
        {
            "status": 422,
            "error": {
                "code": "invalid_data",
                "message": f"observation {WARM}: close is nan; values must be finite",
                "seq": WARM,
            },
        }
    ]


def test_keys_are_checked_at_the_handshake(server):
    for headers in ({}, {"X-API-Key": "not-a-key-0123456789abcdef"}):
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url(server), additional_headers=headers)
        assert refused.value.response.status_code == 401
        assert json.loads(refused.value.response.body)["error"]["code"] == "unauthorized"


def test_a_reader_that_does_not_read_is_disconnected(server, closes):
    with client(server, ALICE) as alice:
        sessions = [open_session(alice, closes) for _ in range(50)]
    # a client that never reads (the websockets clients keep reading into their own buffers)
    protocol = ClientProtocol(parse_uri(ws_url(server)))
    request = protocol.connect()
    request.headers["X-API-Key"] = ALICE
    protocol.send_request(request)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.settimeout(30)
        sock.sendall(b"".join(protocol.data_to_send()))
        while protocol.handshake_exc is None and not protocol.events_received():
            protocol.receive_data(sock.recv(4096))
        with contextlib.suppress(OSError):  # the service may close before all is sent
            for seq in range(WARM, 400):
                items = [{"session_id": sid, "seq": seq, "observations": [closes[seq]]} for sid in sessions]
                protocol.send_text(json.dumps({"id": seq, "items": items}).encode())
                sock.sendall(b"".join(protocol.data_to_send()))
        with client(server, ALICE) as alice:  # not reading until the service has stopped applying messages
            wait_until_still(lambda: state(alice, sessions[-1])["next_seq"])
        while protocol.close_rcvd is None:  # what was sent before the close frame, then the close frame
            data = sock.recv(1 << 16)
            if not data:
                break
            protocol.receive_data(data)
            protocol.events_received()
    assert protocol.close_rcvd is not None and protocol.close_rcvd.code == SLOW_READER


def wait_until_still(value: Callable[[], object], seconds: float = 1.0) -> None:
    """Return once ``value()`` has not changed for ``seconds``."""
    last, since = value(), time.monotonic()
    while time.monotonic() - since < seconds:
        time.sleep(seconds / 10)
        now = value()
        if now != last:
            last, since = now, time.monotonic()


def test_a_feed_that_drops_and_reconnects_equals_an_offline_replay(server, registry: Registry, closes):
    async def stream() -> tuple[list[dict[str, Any]], int]:
        settings = ClientSettings(server.url, api_key=ALICE, timeout_seconds=10)
        async with AsyncClient(settings) as http:
            sessions = [await http.open(closes[i : i + WARM]) for i in range(8)]
            async with http.feed() as feed:
                for seq in range(WARM, WARM + 60, 3):
                    # three bars in flight at once; the connection dropped now and then, mid-stream
                    sends = [feed.send([(s, [closes[i + seq + k]]) for i, s in enumerate(sessions)]) for k in range(3)]
                    if seq % 9 == 2:
                        asyncio.get_running_loop().call_soon(feed.drop)
                    for results in await asyncio.gather(*sends):
                        assert not any(isinstance(r, ApiError) for r in results), results
                reconnections = feed.reconnections
            read = [await http.session(s.session_id) for s in sessions]
            return [{"next_seq": r.next_seq, "model": r.model, "forecast": r.forecast} for r in read], reconnections

    finals, reconnections = asyncio.run(stream())
    assert reconnections >= 3
    for i, final in enumerate(finals):
        assert final["next_seq"] == WARM + 60
        offline = registry.predictor(final["model"]["version"]).forecast_history(
            [Observation(close=c) for c in closes[i : i + WARM + 60]]
        )
        assert offline is not None
        assert_close(final["forecast"], offline.to_dict())


def test_a_batch_begun_runs_to_its_end_through_the_stream_s_teardown():
    """Cancelled twice (as a close and the teardown both cancel), the batch still commits; the worker ends cancelled."""
    committed: list[int] = []

    async def batch() -> int:
        await asyncio.sleep(0.05)
        committed.append(1)
        return 1

    async def teardown() -> tuple[int | BaseException]:
        worker = asyncio.create_task(finished(batch()))
        await asyncio.sleep(0.01)
        worker.cancel()
        await asyncio.sleep(0.01)
        worker.cancel()
        return await asyncio.gather(worker, return_exceptions=True)

    [ended] = asyncio.run(teardown())
    assert committed == [1] and isinstance(ended, asyncio.CancelledError)


def test_a_feed_reply_without_a_forecast_says_what_the_session_needs(server, registry: Registry, closes):
    needed = registry.load(str(registry.champion("ar")))["config"]["window"] + 1
    with client(server, ALICE) as alice:
        opened = alice.post("/v1/sessions", json={"mode": "ar", "history": closes[:5]}).json()
        assert (opened["forecast"], opened["needs"]) == (None, needed - 5)
        item = {"session_id": opened["session_id"], "seq": 5, "observations": [closes[5]]}
        with connect(ws_url(server), additional_headers={"X-API-Key": ALICE}) as ws:
            ws.send(json.dumps({"id": "young", "items": [item]}))
            reply = json.loads(ws.recv(timeout=10))["items"][0]["reply"]
    assert (reply["forecast"], reply["needs"]) == (None, needed - 6)


def test_a_key_holds_so_many_connections_and_a_message_over_the_body_limit_closes_its_own(
    registry: Registry, tmp_path_factory: pytest.TempPathFactory, closes
):
    log = tmp_path_factory.mktemp("stream-limits") / "serve.log"
    values = {"api_keys": f"{ALICE},{BOB}", "max_streams_per_key": "2", "max_body_bytes": "4096"}
    with ServiceProcess(env(registry, **values), log) as limited, contextlib.ExitStack() as stack:
        held = [
            stack.enter_context(connect(ws_url(limited), additional_headers={"X-API-Key": ALICE})) for _ in range(2)
        ]
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url(limited), additional_headers={"X-API-Key": ALICE})
        assert refused.value.response.status_code == 429
        assert json.loads(refused.value.response.body)["error"] == {
            "code": "quota_exceeded",
            "message": "this API key holds 2 WebSocket connections, its most (LATENTCAST_MAX_STREAMS_PER_KEY): "
            "close one first",
        }
        stack.enter_context(connect(ws_url(limited), additional_headers={"X-API-Key": BOB}))  # another key's own

        # a message one byte over the body limit closes its connection with 1009, and frees its place
        with client(limited, ALICE) as alice:
            session = open_session(alice, closes)
        item = '{"session_id": "' + session + '", "seq": ' + str(WARM) + ', "observations": [%s]}'
        small = '{"id": 1, "items": [' + item % closes[WARM] + "]}"
        held[0].send(small)
        assert json.loads(held[0].recv(timeout=10))["items"][0]["status"] == 200
        held[0].send(small + " " * (4097 - len(small)))
        with pytest.raises(ConnectionClosed) as closed:
            held[0].recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        deadline = time.monotonic() + 10
        while True:  # the server counts the connection out once it has seen it closed
            try:
                stack.enter_context(connect(ws_url(limited), additional_headers={"X-API-Key": ALICE}))
                break
            except InvalidStatus:
                assert time.monotonic() < deadline
                time.sleep(0.1)


def test_a_server_that_passes_a_message_over_the_limit_on_gets_it_refused_by_the_app():
    """Under another server than ``latentcast serve`` (which refuses it at its frame's header), the app
    refuses the message itself, before it is queued or parsed."""

    class Frames:
        def __init__(self, *texts: str) -> None:
            self.frames = [{"type": "websocket.receive", "text": t} for t in texts]

        async def receive(self) -> dict[str, Any]:
            return self.frames.pop(0)

    inbound: asyncio.Queue[str | bytes] = asyncio.Queue()
    with pytest.raises(
        MessageTooBig, match=r"^a message is 4097 bytes; the limit is 4096 bytes \(LATENTCAST_MAX_BODY_BYTES\)$"
    ):
        asyncio.run(read(Frames("x" * 4096, "y" * 4097), 4096, inbound))  # type: ignore[arg-type]
    assert inbound.qsize() == 1 and inbound.get_nowait() == "x" * 4096
