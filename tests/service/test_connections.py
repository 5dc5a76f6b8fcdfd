"""The front door, through a real ``latentcast serve``: head size, head and body time, connections."""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from latentcast.errors import ConfigError
from service.config import RESERVED_FILES
from service.http.connections import allow_open_files
from tests.service import hostile
from tests.support.processes import ServiceProcess
from training.registry import Registry

# each test runs real server processes (uvicorn, nginx): the full tier runs them, make check does not
pytestmark = [pytest.mark.slow, pytest.mark.timing]

LIMITS = {
    "LATENTCAST_HEADER_TIMEOUT_SECONDS": "1",
    "LATENTCAST_BODY_TIMEOUT_SECONDS": "1",
    "LATENTCAST_KEEP_ALIVE_SECONDS": "1",
    "LATENTCAST_MAX_CONNECTIONS": "12",
}


@pytest.fixture(scope="module")
def server(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    env = {"LATENTCAST_ARTIFACTS": str(registry.root), "LATENTCAST_REGISTRY_POLL_SECONDS": "0", **LIMITS}
    with ServiceProcess(env, tmp_path_factory.mktemp("front-door") / "serve.log") as process:
        yield process


class Prober:
    """Times ``GET /healthz`` every 50 ms in a thread, while something else goes on."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seconds: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    ok = client.get(f"{self.url}/healthz").status_code == 200
                except httpx.TransportError:
                    ok = False
                self.seconds.append(time.perf_counter() - started)
                self.failures += not ok
                self._stop.wait(0.05)

    def __enter__(self) -> Prober:
        self._thread.start()
        while not self.seconds:  # probing from before the load starts
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_a_150_mb_header_is_refused_at_the_cap_and_healthz_never_stalls(server: ServiceProcess):
    with Prober(server.url) as prober:
        outcome = hostile.huge_header(server.port, megabytes=150)
        time.sleep(0.3)
    assert outcome.closed
    assert outcome.sent <= 16 * hostile.MEGABYTE  # cut off near the cap (socket buffers hold the rest), not at its end
    assert outcome.seconds < 5
    if outcome.status is not None:  # the answer is lost if the client's unread bytes reset the connection
        assert outcome.status == 431
        assert outcome.body == {
            "error": {
                "code": "headers_too_large",
                "message": "request line and headers are over 32768 bytes (LATENTCAST_MAX_HEADER_BYTES)",
            }
        }
    assert prober.failures == 0 and prober.seconds and max(prober.seconds) < 0.5


def test_a_head_just_under_the_cap_is_served(server: ServiceProcess):
    response = httpx.get(f"{server.url}/healthz", headers={"X-Padding": "a" * 30_000})
    assert response.status_code == 200


def test_a_slow_head_is_cut_off_with_408(server: ServiceProcess):
    outcome = hostile.trickle(server.port, b"X-Slow: " + b"a" * 100, every=0.1, seconds=5, head=hostile.HEAD)
    assert outcome.closed and outcome.seconds < 2.5
    assert outcome.status == 408
    assert outcome.body == {
        "error": {
            "code": "request_timeout",
            "message": "request line and headers took over 1 s (LATENTCAST_HEADER_TIMEOUT_SECONDS)",
        }
    }


def test_a_connection_that_sends_nothing_is_closed(server: ServiceProcess):
    with hostile.connect(server.port) as sock:
        outcome = hostile.wait_for_answer(sock, seconds=5)
    assert outcome.closed and outcome.seconds < 2.5 and outcome.status == 408


def test_a_trickled_body_is_cut_off_with_408(server: ServiceProcess):
    head = b"POST /v1/forecast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    outcome = hostile.trickle(server.port, b'{"observations": [' + b"1," * 400, every=0.1, seconds=5, head=head)
    assert outcome.closed and outcome.seconds < 2.5
    assert outcome.status == 408
    assert outcome.body == {
        "error": {
            "code": "request_timeout",
            "message": "the request body took over 1 s (LATENTCAST_BODY_TIMEOUT_SECONDS)",
        }
    }


def test_an_idle_kept_alive_connection_is_closed(server: ServiceProcess):
    with hostile.connect(server.port) as sock:
        sock.sendall(hostile.HEAD + b"\r\n")
        outcome = hostile.wait_for_answer(sock, seconds=5)
    assert outcome.status == 200 and outcome.closed and outcome.seconds < 2.5


def test_a_request_that_is_not_http_gets_a_json_400(server: ServiceProcess):
    with hostile.connect(server.port) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        outcome = hostile.wait_for_answer(sock, seconds=5)
    assert outcome.status == 400
    assert outcome.body == {"error": {"code": "invalid_request", "message": "the request is not valid HTTP/1.1"}}


def test_connections_past_the_bound_get_a_json_503_and_the_others_are_served(server: ServiceProcess):
    held = [hostile.connect(server.port) for _ in range(12)]
    try:
        time.sleep(0.2)
        with hostile.connect(server.port) as extra:
            outcome = hostile.wait_for_answer(extra, seconds=2)
        assert outcome.status == 503 and outcome.closed
        assert outcome.body == {
            "error": {
                "code": "unavailable",
                "message": "the server holds its most connections (12); try again shortly",
            }
        }
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_the_open_file_limit_is_raised_for_the_connections_or_the_setting_refused():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 2 * RESERVED_FILES)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
        allow_open_files(lowered)  # needs RESERVED_FILES more
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == lowered + RESERVED_FILES
        if hard != resource.RLIM_INFINITY:
            with pytest.raises(ConfigError) as err:
                allow_open_files(hard)
            assert str(err.value) == (
                f"LATENTCAST_MAX_CONNECTIONS={hard} needs {hard + RESERVED_FILES} open files and the limit is "
                f"{hard}: lower it or raise the limit (ulimit -n)"
            )
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_head_and_http_1_0_are_served_and_a_request_that_does_not_parse_is_not(server: ServiceProcess):
    """Through uvicorn itself: HEAD gets the GET's head and no body, HTTP/1.0 is answered (as HTTP/1.1
    servers must), and only what does not parse as HTTP is 400 (the test above)."""
    with hostile.connect(server.port) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        reply, _ = hostile._read_until_closed(sock, b"", 5)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and body == b""
    assert b"content-security-policy: default-src 'none'; script-src 'self'" in head.lower()
    with hostile.connect(server.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        outcome = hostile.wait_for_answer(sock, seconds=5)
    assert outcome.status == 200 and outcome.closed
