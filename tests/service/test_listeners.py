"""The supervisor's socket of ``serve --workers N``: bound, never listening, a new socket of each worker's own."""

from __future__ import annotations

import collections
import pickle
import select
import socket
from multiprocessing.reduction import ForkingPickler

import pytest

from latentcast.errors import ConfigError
from service.http.listeners import bind, reuse_port_balances

CONNECTIONS = 64

pytestmark = pytest.mark.skipif(not reuse_port_balances(), reason="SO_REUSEPORT spreads connections on Linux only")


def as_a_worker_gets_it(sock: socket.socket) -> socket.socket:
    """``sock`` pickled and unpickled as multiprocessing passes it to a spawned worker."""
    found = pickle.loads(ForkingPickler.dumps(sock))
    assert isinstance(found, socket.socket)
    return found


def test_each_worker_gets_a_socket_of_its_own_on_the_supervisors_address():
    with bind("127.0.0.1", 0) as supervisor:
        address = supervisor.getsockname()
        with as_a_worker_gets_it(supervisor) as first, as_a_worker_gets_it(supervisor) as second:
            assert first.getsockname() == second.getsockname() == address  # port 0: the port it was given
            assert len({supervisor.fileno(), first.fileno(), second.fileno()}) == 3
            assert type(first) is socket.socket and type(second) is socket.socket
            first.listen()
            second.listen()
            # the supervisor's socket does not listen: every connection reaches a worker's
            assert supervisor.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 0
            accepted = collections.Counter[str]()
            names = {first: "first", second: "second"}
            for _ in range(CONNECTIONS):
                with socket.create_connection(address, timeout=5):
                    ready, _, _ = select.select([first, second], [], [], 5)
                    assert len(ready) == 1, ready  # one worker's socket has it
                    connection, _ = ready[0].accept()
                    connection.close()
                    accepted[names[ready[0]]] += 1
    # connections from many client ports reach both workers' sockets (all on one: odds of 2 in 2**64)
    assert set(accepted) == {"first", "second"}, accepted


def test_a_port_held_by_another_server_is_a_clear_error():
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind("127.0.0.1", port)
