"""Real processes for the tests and the benchmarks: ``latentcast serve``, free ports, readiness, Debian's tools.

Every test and benchmark that needs a server process starts it here (Redis in
``tests/support/redis_processes.py``), so that there is one way to launch the
service and one readiness poll.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 180.0  # a loaded machine takes long to import torch and the app
POLL_SECONDS = 0.05

Command = Callable[[int], Sequence[str]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    ready: Callable[[], bool], process: subprocess.Popen[bytes], what: str, log: Path, seconds: float = START_SECONDS
) -> None:
    """Return once ``ready()``; raise with the process's log if it exits or takes longer than ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log_tail(log)}")
        if ready():
            return
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"{what} did not start in {seconds} s:\n{log_tail(log)}")


def serve_command(port: int) -> list[str]:
    """``latentcast serve`` on loopback and ``port``, run by this interpreter."""
    return [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]


class ServiceProcess:
    """A server process on a free port with ``LATENTCAST_*`` variables, ready once /readyz answers 200.

    ``command`` builds the command line for a port: ``latentcast serve`` unless
    told otherwise. A context manager; ``start`` may also be called directly.
    """

    def __init__(
        self,
        env: dict[str, str],
        log: Path,
        port: int | None = None,
        command: Command = serve_command,
        start_seconds: float = START_SECONDS,
    ) -> None:
        self.port = port or free_port()
        self.start_seconds = start_seconds
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.log = log
        self.command = command
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT)}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                list(self.command(self.port)), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            wait_until(self.ready, self.process, f"the server on port {self.port}", self.log, self.start_seconds)
        except BaseException:
            self.stop()  # a server slow to start is not left running
            raise
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, as in a crash."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.running():
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def __enter__(self) -> ServiceProcess:
        return self if self.process is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def debian_tool(binary: str, package: str, needed_by: str) -> str:
    """The path of ``binary``, installed from Debian's ``package`` when missing and running as root."""
    found = shutil.which(binary)
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", package], check=False, env=env, capture_output=True)
        found = shutil.which(binary)
    if found is None:
        raise RuntimeError(f"{needed_by} need {binary}: install it (apt-get install {package})")
    return found


def log_tail(log: Path) -> str:
    """The last 5,000 characters of ``log``, for an error that says why a process did not start."""
    return log.read_text(errors="replace")[-5000:] if log.exists() else ""
