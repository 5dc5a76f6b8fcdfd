"""``serve_workers``: uvicorn's worker supervisor, each worker listening on a socket of its own.

uvicorn's ``--workers`` binds one socket in the supervisor and hands it to every
worker: the workers accept from one queue, and whichever event loop wakes first
takes what is waiting. A burst of keep-alive connections (a load balancer's pool,
a client opening its connections at once) can then land mostly on one worker and
stay there (docs/streaming.md, "Scale-out"). Here each worker binds its own socket
to the address with ``SO_REUSEPORT``, and Linux spreads new connections across
the workers' sockets by a hash of each connection's addresses and ports.

The supervisor is uvicorn's own (``Multiprocess``): it still starts, checks,
restarts and stops the workers, and takes the same signals (TERM and INT stop,
HUP replaces the workers, TTIN and TTOU add and remove one). Its socket is bound,
which reserves the address and makes a port in use fail at start, but never
listens, so it takes no connection: the kernel hands connections only to
listening sockets. A worker's socket is made when the worker starts, restarted
ones included: pickled to a spawned worker (as multiprocessing passes the
sockets), the supervisor's socket becomes a new one bound to the same address.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Callable

import uvicorn
from uvicorn.supervisors import Multiprocess

from latentcast.errors import ConfigError

log = logging.getLogger("uvicorn.error")  # beside uvicorn's own messages, configured as they are


def reuse_port_balances() -> bool:
    """Whether sockets bound with ``SO_REUSEPORT`` share connections out: Linux only.

    Elsewhere the option may exist but hands every connection to one of the sockets.
    """
    return sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


def _bind_beside_others(sock: socket.socket, address: tuple[str, int]) -> None:
    """Bind ``sock`` to ``address`` with ``SO_REUSEPORT``, where the other workers' sockets are; closed on failure."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart needs no wait for TIME_WAIT
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise


def _worker_socket(family: int, address: tuple[str, int]) -> socket.socket:
    """A worker's own socket on ``address``: what the supervisor's socket becomes when pickled to it."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    _bind_beside_others(sock, address)
    return sock


class ReusePortSocket(socket.socket):
    """The supervisor's socket: bound with ``SO_REUSEPORT``, never listening; a worker's own when pickled."""

    def __reduce__(self) -> tuple[Callable[[int, tuple[str, int]], socket.socket], tuple[int, tuple[str, int]]]:
        # getsockname: the port the supervisor was given, even where it asked for any (port 0)
        return _worker_socket, (self.family, self.getsockname()[:2])


def bind(host: str, port: int) -> ReusePortSocket:
    """The supervisor's socket on ``host``:``port``; ``ConfigError`` if the address cannot be bound."""
    sock = ReusePortSocket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        _bind_beside_others(sock, (host, port))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


def serve_workers(config: uvicorn.Config) -> None:
    """Run ``config.workers`` workers of ``config``'s app, each on its own socket, until stopped."""
    sock = bind(config.host, config.port)
    try:
        shown = f"[{config.host}]" if ":" in config.host else config.host
        log.info(
            "Uvicorn running on http://%s:%d with %d workers, each on a socket of its own (Press CTRL+C to quit)",
            shown,
            sock.getsockname()[1],
            config.workers,
        )
        Multiprocess(config, sockets=[sock]).run()
    finally:
        sock.close()
