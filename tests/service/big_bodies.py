"""A client with one valid key sending the largest messages it can: 16 MB WebSocket frames, 520k-close bodies.

``python -m tests.service.big_bodies PORT KEY SECONDS`` sends, one after the other until SECONDS
have passed, from a process of its own (so that the client measured beside it shares no
interpreter with it):

- a 16 MB text frame on ``/v1/stream``: one item of 8M closes for a made-up session;
- ``POST /v1/forecast`` with 520,000 closes in a body just under the 1 MiB limit;
- ``POST /v1/observations`` with one item of 520,000 closes;
- with ``--many``, ``POST /v1/forecast`` of 1,000 histories of 200 closes each, within every limit.

It prints, as JSON, how the server answered each kind, counted by answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

MEGABYTE = 1 << 20
FRAME_CLOSES = 8 * MEGABYTE  # "1," each: 16 MB
BODY_CLOSES = 520_000  # "1," each: 1.04 MB, under the default 1 MiB body limit
HISTORIES, HISTORY_CLOSES = 1000, 200  # the most items of a bulk request, each of 200 closes: 0.4 MB


def closes(count: int) -> str:
    return "[" + "1," * (count - 1) + "1]"


def frame() -> str:
    return (
        '{"id": 1, "items": [{"session_id": "madeupmadeupmadeup", "seq": 0, "observations": '
        + closes(FRAME_CLOSES)
        + "}]}"
    )


def send_frame(port: int, key: str, text: str) -> str:
    """How the server answered a frame of ``text``: its close code, or what came back."""
    try:
        with connect(f"ws://127.0.0.1:{port}/v1/stream", additional_headers={"X-API-Key": key}, max_size=None) as ws:
            try:
                ws.send(text)
                reply = ws.recv(timeout=30)
            except ConnectionClosed as closed:
                return f"closed {closed.rcvd.code if closed.rcvd else None}"
            return f"answered {json.loads(reply).get('status')}"
    except OSError as exc:
        return f"failed {type(exc).__name__}"


def post(client: httpx.Client, path: str, body: str) -> str:
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    if response.status_code == 200 and "items" in (reply := response.json()):
        return "items " + ",".join(sorted({str(item["status"]) for item in reply["items"]}))
    return str(response.status_code)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("key")
    parser.add_argument("seconds", type=float)
    parser.add_argument("--many", action="store_true", help="also send a bulk forecast of 1,000 histories")
    args = parser.parse_args()
    text = frame()
    forecast = '{"observations": ' + closes(BODY_CLOSES) + "}"
    bulk = '{"items": [{"session_id": "madeupmadeupmadeup", "seq": 0, "observations": ' + closes(BODY_CLOSES) + "}]}"
    many = '{"items": [' + ",".join(['{"observations": ' + closes(HISTORY_CLOSES) + "}"] * HISTORIES) + "]}"
    outcomes: dict[str, Counter[str]] = {
        "frame": Counter(),
        "forecast": Counter(),
        "bulk": Counter(),
        "many": Counter(),
    }
    deadline = time.monotonic() + args.seconds
    url = f"http://127.0.0.1:{args.port}"
    with httpx.Client(base_url=url, headers={"X-API-Key": args.key}, timeout=60) as client:
        while time.monotonic() < deadline:
            outcomes["frame"][send_frame(args.port, args.key, text)] += 1
            outcomes["forecast"][post(client, "/v1/forecast", forecast)] += 1
            outcomes["bulk"][post(client, "/v1/observations", bulk)] += 1
            if args.many:
                outcomes["many"][post(client, "/v1/forecast", many)] += 1
    sizes = {
        "frame_bytes": len(text),
        "forecast_bytes": len(forecast),
        "bulk_bytes": len(bulk),
        "many_bytes": len(many),
    }
    sys.stdout.write(json.dumps({**{k: dict(v) for k, v in outcomes.items()}, **sizes}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
