"""The largest messages one key can send, against a real ``latentcast serve`` with its default limits.

From a process of its own (tests/service/big_bodies.py), a client with a valid key sends, over
and over, a 16 MB WebSocket frame, a 520,000-close forecast body and a bulk append of one
520,000-close item. Meanwhile another client's ``/healthz`` must keep its 99th percentile under
100 ms, and the server's resident memory grow by less than 100 MB.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service.test_bulk import ALICE
from tests.service.test_e2e import env
from tests.support.processes import ROOT, ServiceProcess
from training.registry import Registry

ATTACK = 20.0
P99_SECONDS = 0.1
GROWTH_BYTES = 100 * (1 << 20)

pytestmark = [pytest.mark.slow, pytest.mark.timing]
log = logging.getLogger(__name__)


@pytest.fixture
def server(registry: Registry, tmp_path: Path) -> Iterator[ServiceProcess]:
    with ServiceProcess(env(registry, api_keys=ALICE), tmp_path / "serve.log") as process:
        yield process


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def test_huge_frames_and_bodies_stall_no_one_and_cost_no_memory(server: ServiceProcess):
    with httpx.Client(base_url=server.url, timeout=10) as probe:
        for _ in range(20):  # the first requests of a process warm its code paths
            assert probe.get("/healthz").status_code == 200
        before = resident_bytes(server.pid)
        command = [sys.executable, "-m", "tests.service.big_bodies", str(server.port), ALICE, str(ATTACK)]
        attacker = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE)
        seconds, peak = [], before
        try:
            while attacker.poll() is None:
                started = time.perf_counter()
                assert probe.get("/healthz").status_code == 200
                seconds.append(time.perf_counter() - started)
                peak = max(peak, resident_bytes(server.pid))
                time.sleep(0.02)
        finally:
            out, _ = attacker.communicate(timeout=120)
    attack = json.loads(out)

    ordered = sorted(seconds)
    p99, median = ordered[math.ceil(0.99 * len(ordered)) - 1], ordered[len(ordered) // 2]
    growth = peak - before
    figures = (
        f"{len(seconds)} /healthz: median {median * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {ordered[-1] * 1000:.1f} ms; resident memory {before / 2**20:.0f} MB, peak +{growth / 2**20:.1f} MB; "
        f"attack {attack}"
    )
    log.info("%s", figures)
    # every frame was refused by its size (1009), every body by its count (413), none answered otherwise
    assert set(attack["frame"]) == {"closed 1009"}, figures
    assert set(attack["forecast"]) == {"413"} and set(attack["bulk"]) == {"items 413"}, figures
    assert attack["frame_bytes"] > 16_000_000 and attack["forecast_bytes"] < 1_048_576, figures
    assert p99 < P99_SECONDS, figures
    assert growth < GROWTH_BYTES, figures
