"""deploy/nginx.conf, run by a real nginx in front of a real ``latentcast serve``.

The configuration is the one docker-compose.yml mounts, with what only a
container has swapped for this machine's: the upstream and the listening
address, the temp folders, and the time limits (shortened, so that the test
waits a second for a slow client rather than ten).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service import hostile
from tests.service.test_connections import Prober
from tests.support.processes import ROOT, ServiceProcess, debian_tool, free_port, wait_until
from training.registry import Registry

# each test runs real server processes (uvicorn, nginx): the full tier runs them, make check does not
pytestmark = [pytest.mark.slow, pytest.mark.timing]

CONFIG = ROOT / "deploy" / "nginx.conf"
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def local_config(upstream: int, port: int, folder: Path) -> str:
    """deploy/nginx.conf for this machine: each swapped line must be there, once."""
    text = CONFIG.read_text()
    swaps = {
        "        server api:8000 resolve;\n": f"        server 127.0.0.1:{upstream};\n",
        "        listen 8080;\n": f"        listen 127.0.0.1:{port};\n",
        "    client_header_timeout 10s;\n": "    client_header_timeout 1s;\n",
        "    client_body_timeout 30s;\n": "    client_body_timeout 1s;\n",
        "http {\n": "http {\n"
        + "".join(
            f"    {kind}_temp_path {folder / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        ),
    }
    for old, new in swaps.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


class NginxProcess:
    """nginx in the foreground on a free loopback port, its prefix a temp folder; a context manager."""

    def __init__(self, upstream: int, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.folder = folder
        self.upstream = upstream
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> NginxProcess:
        binary = debian_tool("nginx", "nginx", "the proxy tests")
        config = self.folder / "nginx.conf"
        config.write_text(local_config(self.upstream, self.port, self.folder))
        log = self.folder / "nginx.log"
        command = [binary, "-p", str(self.folder), "-c", str(config), "-e", "stderr"]
        command += ["-g", f"daemon off; pid {self.folder / 'nginx.pid'};"]
        with open(log, "ab") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        wait_until(self._ready, self.process, f"nginx on port {self.port}", log)
        return self

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/proxy/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # nginx's graceful stop: its workers exit too
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def __enter__(self) -> NginxProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="module")
def proxy(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxProcess]:
    folder = tmp_path_factory.mktemp("proxy")
    env = {"LATENTCAST_ARTIFACTS": str(registry.root), "LATENTCAST_REGISTRY_POLL_SECONDS": "0"}
    with ServiceProcess(env, folder / "serve.log") as api, NginxProcess(api.port, folder) as nginx:
        yield nginx


def test_requests_pass_through_the_proxy(proxy: NginxProcess, closes):
    with httpx.Client(base_url=proxy.url) as client:
        assert client.get("/proxy/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json()["status"] == "ready"
        opened = client.post("/v1/sessions", json={"history": closes[:10]})
        assert opened.status_code == 201
        url = f"/v1/sessions/{opened.json()['session_id']}"
        appended = client.post(f"{url}/observations", json={"seq": 10, "observations": closes[10:12]})
        assert appended.status_code == 200 and appended.json()["next_seq"] == 12
        assert client.get(url).json()["next_seq"] == 12
        gap = client.post(f"{url}/observations", json={"seq": 20, "observations": [closes[20]]})
        assert gap.status_code == 409 and gap.json()["error"]["expected_seq"] == 12  # the API's own answer
        assert client.delete(url).status_code == 204


def test_a_150_mb_header_is_cut_off_by_the_proxy_and_the_api_stays_responsive(proxy: NginxProcess):
    with Prober(proxy.url) as prober:
        outcome = hostile.huge_header(proxy.port, megabytes=150)
        time.sleep(0.3)
    assert outcome.closed and outcome.sent <= 16 * hostile.MEGABYTE and outcome.seconds < 5
    if outcome.status is not None:
        assert outcome.status == 431 and outcome.body is not None
        assert outcome.body["error"]["code"] == "headers_too_large"  # type: ignore[index]
    assert prober.failures == 0 and max(prober.seconds) < 0.5


def test_a_slow_loris_and_a_stalled_body_are_cut_off_by_the_proxy(proxy: NginxProcess):
    # nginx's head timeout runs from the first byte; its body timeout is between two reads (a
    # trickled body is held by nginx alone, bounded by the connections per address, never by the API)
    post = b"POST /v1/forecast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    with Prober(proxy.url) as prober:
        slow_head = hostile.trickle(proxy.port, b"X-Slow: " + b"a" * 100, every=0.1, seconds=6, head=hostile.HEAD)
        stalled_body = hostile.trickle(proxy.port, b"[" * 1000, every=1.5, seconds=6, head=post)
    for outcome in (slow_head, stalled_body):
        # nginx closes a connection whose client timed out without an answer, or answers 408
        assert outcome.closed and outcome.seconds < 4, outcome
        assert outcome.status in (None, 408)
    assert prober.failures == 0 and max(prober.seconds) < 0.5


def test_the_proxy_s_own_errors_are_the_api_s_error_body(proxy: NginxProcess):
    too_large = httpx.post(
        f"{proxy.url}/v1/forecast", content=b"1" * (2 << 20), headers={"content-type": "application/json"}
    )
    assert too_large.status_code == 413 and too_large.headers["content-type"] == "application/json"
    assert too_large.json()["error"]["code"] == "limit_exceeded"
    with hostile.connect(proxy.port) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        outcome = hostile.wait_for_answer(sock, seconds=5)
    assert outcome.status == 400 and outcome.body == {
        "error": {"code": "invalid_request", "message": "the request is not valid HTTP/1.1"}
    }


def test_the_proxy_limits_requests_per_client_address(proxy: NginxProcess):
    # 100 a second with bursts of 200: a client sending as fast as it can is told to slow down, as
    # JSON (the limit applies to what the proxy passes on: /proxy/healthz is answered before it)
    with httpx.Client(base_url=proxy.url) as client:
        started = time.monotonic()
        statuses: list[int] = []
        while 429 not in statuses and len(statuses) < 3000:
            statuses.append(client.get("/healthz").status_code)
        limited = client.get("/healthz")
        seconds = time.monotonic() - started
    assert 429 in statuses and statuses.count(200) >= 200  # the burst, then the rate
    assert statuses.count(200) <= 200 + 100 * seconds + 1
    if limited.status_code == 429:
        assert limited.json()["error"]["code"] == "rate_limited"
    time.sleep(2.5)  # the allowance refills at 100 a second
    assert httpx.get(f"{proxy.url}/healthz").status_code == 200
