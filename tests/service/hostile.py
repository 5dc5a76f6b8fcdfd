"""Hostile clients on raw sockets: an endless header, slow heads, a trickled body (loopback only).

Each returns what the server did to it, so that tests assert on the server's
answer. ``python -m tests.service.hostile slow PORT COUNT SECONDS --heads MB``
holds slow connections, and sends huge heads, from a process of their own (the
hostile-load test's attacker).
"""

from __future__ import annotations

import argparse
import json
import resource
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass

MEGABYTE = 1 << 20
HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"


@dataclass(frozen=True)
class Outcome:
    """How a hostile connection ended: the server's answer (if it got through), bytes sent, seconds."""

    status: int | None
    body: dict[str, object] | None
    sent: int
    seconds: float
    closed: bool


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def huge_header(port: int, megabytes: int, chunk: int = MEGABYTE) -> Outcome:
    """Send a head whose one header grows ``chunk`` bytes at a time, up to ``megabytes``, until cut off."""
    started = time.monotonic()
    sent, reply, closed = 0, b"", False
    with connect(port) as sock:
        try:
            sock.sendall(HEAD + b"X-Junk: ")
            while sent < megabytes * MEGABYTE:
                sock.sendall(b"a" * chunk)
                sent += chunk
                reply, closed = _read_if_any(sock, reply)
                if closed:
                    break
            else:
                sock.sendall(b"\r\n\r\n")
            reply, closed = _read_until_closed(sock, reply)
        except OSError:
            closed = True
            reply, _ = _read_if_any(sock, reply)
    return _outcome(reply, sent, time.monotonic() - started, closed)


def trickle(port: int, data: bytes, every: float, seconds: float, head: bytes = b"") -> Outcome:
    """Send ``head`` at once, then ``data`` one byte every ``every`` seconds, for at most ``seconds``."""
    started = time.monotonic()
    sent, reply, closed = 0, b"", False
    with connect(port) as sock:
        try:
            sock.sendall(head)
            for byte in data:
                if time.monotonic() - started > seconds:
                    break
                sock.sendall(bytes([byte]))
                sent += 1
                reply, closed = _read_if_any(sock, reply, wait=every)
                if closed:
                    break
        except OSError:
            closed = True
    return _outcome(reply, sent, time.monotonic() - started, closed)


def wait_for_answer(sock: socket.socket, seconds: float) -> Outcome:
    """What arrives on ``sock`` (sending nothing) until it closes or ``seconds`` pass."""
    started = time.monotonic()
    reply, closed = _read_until_closed(sock, b"", seconds)
    return _outcome(reply, 0, time.monotonic() - started, closed)


def hold_slow_connections(
    port: int, count: int, seconds: float, every: float = 1.0, opened_per_second: int = 1000
) -> dict[str, int]:
    """Keep ``count`` connections sending a head one byte every ``every`` seconds; reopen those cut off.

    They are opened ``opened_per_second`` at a time, as a crowd gathers (and as the server
    then cuts them off), not all in one instant.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, count + 256)), hard))
    socks: list[socket.socket] = []
    while len(socks) < count:
        socks += [_slow_socket(port) for _ in range(min(opened_per_second // 10, count - len(socks)))]
        time.sleep(0.1)
    cut, refused = 0, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tick = time.monotonic()
        for i, sock in enumerate(socks):
            try:
                sock.send(b"X")
                if not _received(sock):
                    raise ConnectionResetError
            except OSError:
                cut += 1
                sock.close()
                try:
                    socks[i] = _slow_socket(port)
                except OSError:
                    refused += 1
        time.sleep(max(0.0, every - (time.monotonic() - tick)))
    for sock in socks:
        sock.close()
    return {"connections": count, "cut": cut, "refused": refused}


def _received(sock: socket.socket) -> bool:
    """False once the server has closed the non-blocking ``sock``."""
    try:
        return bool(sock.recv(65536))
    except BlockingIOError:
        return True


def _slow_socket(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setblocking(False)
    sock.send(HEAD + b"X-Slow: ")
    return sock


def _read_if_any(sock: socket.socket, reply: bytes, wait: float = 0.0) -> tuple[bytes, bool]:
    poll = select.poll()  # select() stops at descriptor 1024, and the attacker holds thousands
    poll.register(sock, select.POLLIN)
    try:
        if not poll.poll(wait * 1000):
            return reply, False
        data = sock.recv(65536)
    except OSError:
        return reply, True
    return reply + data, not data


def _read_until_closed(sock: socket.socket, reply: bytes, seconds: float = 10.0) -> tuple[bytes, bool]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reply, closed = _read_if_any(sock, reply, wait=0.05)
        if closed:
            return reply, True
    return reply, False


def _outcome(reply: bytes, sent: int, seconds: float, closed: bool) -> Outcome:
    if not reply:
        return Outcome(None, None, sent, seconds, closed)
    head, _, body = reply.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return Outcome(status, json.loads(body) if body else None, sent, seconds, closed)


def send_huge_heads(port: int, megabytes: int, until: threading.Event, every: float = 0.1) -> dict[str, int]:
    """A huge head every ``every`` seconds until ``until`` is set: how many, and how many were cut off early."""
    outcomes = []
    while not until.wait(every):
        outcomes.append(huge_header(port, megabytes))
    cut = [o for o in outcomes if o.closed and o.sent < megabytes * MEGABYTE]
    return {"heads": len(outcomes), "heads_cut": len(cut), "most_sent": max((o.sent for o in outcomes), default=0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["slow"])
    parser.add_argument("port", type=int)
    parser.add_argument("count", type=int)
    parser.add_argument("seconds", type=float)
    parser.add_argument("--heads", type=int, default=0, help="also send heads of this many MB, ten a second")
    args = parser.parse_args()
    done = threading.Event()
    heads: dict[str, int] = {}
    sender = threading.Thread(target=lambda: heads.update(send_huge_heads(args.port, args.heads, done)))
    if args.heads:
        sender.start()
    result = hold_slow_connections(args.port, args.count, args.seconds)
    done.set()
    if args.heads:
        sender.join()
    sys.stdout.write(json.dumps({**result, **heads}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
