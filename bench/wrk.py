"""wrk against a server process: one run's figures, each connection posting to a session of its own.

``bench/http.py`` and ``bench/profile.py`` load servers with it; the request
script is ``bench/http.lua``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from latentcast_client import Client, ClientSettings

from bench.cpu import CpuMeter, CpuShares
from tests.support.processes import ROOT, ServiceProcess
from tests.support.workers import connections_held

SCRIPT = ROOT / "bench" / "http.lua"
WARM_HISTORY = 50  # closes each session is opened with
WARMUP_SECONDS = 1
OPEN_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Run:
    """One wrk run's figures."""

    server: str
    connections: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failures: int  # non-2xx replies, socket errors and replies with an unexpected next seq
    mean_batch: float | None  # appends per micro-batch during the run (batched service only)
    cpu: CpuShares | None = None  # cores each watched process used, and wrk's ("wrk")
    held: dict[int, int] | None = None  # connections each worker held halfway through the run, by pid

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds


class Server:
    """A server under load: its process, and the sessions wrk posts to (fake ids for a ``bare`` one)."""

    def __init__(self, name: str, process: ServiceProcess, folder: Path, bare: bool = False) -> None:
        self.name = name
        self.process = process
        self.folder = folder
        self.bare = bare

    @property
    def url(self) -> str:
        return self.process.url

    def sessions_file(self, count: int, closes: list[float], tag: str) -> Path:
        """``count`` sessions opened for one run, one per line with its next seq."""
        if self.bare:
            lines = [f"bare-{tag}-{i} {WARM_HISTORY}" for i in range(count)]
        else:
            with Client(ClientSettings(self.url, timeout_seconds=OPEN_TIMEOUT_SECONDS)) as client:
                opened = [client.open(closes[:WARM_HISTORY]) for _ in range(count)]
            lines = [f"{session.session_id} {session.next_seq}" for session in opened]
        path = self.folder / f"sessions-{self.name}-{tag}.txt"
        path.write_text("\n".join(lines) + "\n")
        return path

    def batch_counts(self) -> tuple[float, float]:
        """(batches, appends in them) so far, from /metrics; zeros where there is no batching."""
        if self.bare:
            return 0.0, 0.0
        values = {"count": 0.0, "sum": 0.0}
        for line in httpx.get(f"{self.url}/metrics", timeout=10).text.splitlines():
            for key in values:
                if line.startswith(f"latentcast_append_batch_size_{key} "):
                    values[key] = float(line.split()[-1])
        return values["count"], values["sum"]


def closes_file(folder: Path, closes: list[float]) -> Path:
    """The closes wrk's script sends, one per line."""
    path = folder / "closes.txt"
    path.write_text("\n".join(f"{c:.2f}" for c in closes) + "\n")
    return path


def wrk(
    binary: str,
    server: Server,
    connections: int,
    seconds: int,
    closes: list[float],
    tag: str,
    watch: Mapping[str, int] | None = None,
    workers: Sequence[int] = (),
) -> Run:
    """One wrk run of ``connections`` connections, each posting to its own session.

    ``watch``: processes (name: pid) whose CPU is metered over the run, beside wrk's own;
    ``workers``: the server's processes whose share of the connections is counted halfway through.
    """
    threads = min(connections, os.cpu_count() or 1)
    sessions = server.sessions_file(2 * connections, closes, tag)
    before = server.batch_counts()
    command = [binary, "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s"]
    command += ["-s", str(SCRIPT), server.url, "--", str(sessions), str(closes_file(server.folder, closes))]
    command += [str(threads), str(connections)]
    meter = CpuMeter(watch or {}, reaped_as="wrk")
    meter.start()  # wrk is this process's only child to end during the run: its CPU is what is reaped
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    held = None
    try:
        if workers:
            time.sleep(seconds / 2)
            held = _held(server.process.port, workers)
        out, err = process.communicate(timeout=seconds + 60)
    except BaseException:
        process.kill()  # a run cut short (a timeout, ^C) leaves no wrk behind
        process.wait()
        raise
    cpu = meter.stop() if watch is not None else None
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command, out, err)
    figures = json.loads(out.strip().splitlines()[-1])
    after = server.batch_counts()
    batches = after[0] - before[0]
    return Run(
        server=server.name,
        connections=connections,
        requests=figures["requests"],
        seconds=figures["duration_us"] / 1e6,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        failures=figures["non2xx"] + figures["socket_errors"] + figures["mismatched"],
        mean_batch=(after[1] - before[1]) / batches if batches else None,
        cpu=cpu,
        held=held,
    )


def _held(port: int, workers: Sequence[int]) -> dict[int, int] | None:
    try:
        return connections_held(port, workers)
    except OSError:  # a worker that ended: its count is not worth failing the run for
        return None


def wrk_version(binary: str) -> str:
    return subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split("[")[0].strip()
