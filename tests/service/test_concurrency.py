"""16 threads post interleaved batches to 4 sessions, retrying random batches, on real servers.

Afterwards each session holds every observation exactly once: its seq and
forecast equal an offline replay, every reply to one batch is the same reply,
and the observations applied add up to the stream lengths, with appends to
different sessions micro-batched or not. With Redis, two
server processes share the store, so only its compare-and-set keeps batches
from being applied twice.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from data import sources
from models.series import Observation
from tests.support.processes import ServiceProcess
from training.registry import Registry

pytestmark = pytest.mark.slow  # not in `make check`: see the "slow" marker in pyproject.toml

THREADS = 16
WARM = 5
LENGTH = 120
SECONDS = 120.0
TICKERS = ("AAPL", "GOOG", "IBM", "MSFT")


def batches(rng: random.Random) -> list[tuple[int, int]]:
    """(seq, length) of consecutive batches from WARM to LENGTH, 1 to 5 observations each."""
    out, seq = [], WARM
    while seq < LENGTH:
        size = min(rng.randint(1, 5), LENGTH - seq)
        out.append((seq, size))
        seq += size
    return out


class Stream:
    """One session as the clients see it: its closes, batches, and the replies each batch got."""

    def __init__(self, session_id: str, closes: list[float], plan: list[tuple[int, int]]) -> None:
        self.session_id = session_id
        self.closes = closes
        self.plan = plan
        self.starts = {seq: i for i, (seq, _) in enumerate(plan)}
        self.cursor = 0  # index of the batch the clients believe comes next
        self.replies: dict[tuple[int, int], dict[str, Any]] = {}
        self.lock = threading.Lock()

    def learn(self, next_seq: int) -> None:
        with self.lock:
            self.cursor = max(self.cursor, self.starts.get(next_seq, len(self.plan)))

    def done(self) -> bool:
        return self.cursor >= len(self.plan)


def client_thread(index: int, urls: list[str], streams: list[Stream], failures: list[str]) -> None:
    rng = random.Random(1000 + index)
    clients = [httpx.Client(base_url=url, timeout=30) for url in urls]
    deadline = time.monotonic() + SECONDS
    try:
        while not all(s.done() for s in streams) and time.monotonic() < deadline:
            stream = rng.choice([s for s in streams if not s.done()])
            i = min(stream.cursor, len(stream.plan) - 1)
            roll = rng.random()
            if roll < 0.3:
                i = rng.randint(0, i)  # a retry of a random batch
            seq, size = stream.plan[i]
            if roll > 0.9 and i > 0:  # the previous batch and this one together: an overlap with a new tail
                seq, size = stream.plan[i - 1][0], size + stream.plan[i - 1][1]
            body = {"seq": seq, "observations": stream.closes[seq : seq + size]}
            response = rng.choice(clients).post(f"/v1/sessions/{stream.session_id}/observations", json=body)
            reply = response.json()
            if response.status_code == 200:
                first = stream.replies.setdefault((seq, size), reply)
                if reply != first:
                    failures.append(f"batch {(seq, size)} answered twice differently")
                stream.learn(reply["next_seq"])
            elif response.status_code == 409:
                stream.learn(reply["error"]["expected_seq"])
            else:
                failures.append(f"{response.status_code}: {response.text}")
    finally:
        for client in clients:
            client.close()


def applied(metrics: str) -> float:
    lines = [line for line in metrics.splitlines() if line.startswith("latentcast_observations_applied_total{")]
    return sum(float(line.split()[-1]) for line in lines if 'kind="append"' in line)


def micro_batches(metrics: str) -> float:
    lines = [line for line in metrics.splitlines() if line.startswith("latentcast_append_batch_size_count ")]
    return sum(float(line.split()[-1]) for line in lines)


@pytest.mark.parametrize(("store", "batching"), [("memory", False), ("memory", True), ("redis", True)])
def test_concurrent_retried_batches_equal_an_offline_replay(
    registry: Registry, tmp_path: Path, request, store: str, batching: bool
):
    env = {"LATENTCAST_ARTIFACTS": str(registry.root), "LATENTCAST_REGISTRY_POLL_SECONDS": "0"}
    env["LATENTCAST_LOG_LEVEL"] = "warning"
    env["LATENTCAST_BATCH_ENABLED"] = str(batching).lower()
    if store == "redis":
        env |= {"LATENTCAST_STORE": "redis", "LATENTCAST_REDIS_URL": request.getfixturevalue("redis_server")}
        env["LATENTCAST_REDIS_PREFIX"] = request.getfixturevalue("redis_prefix")
    servers = [ServiceProcess(env, tmp_path / f"serve-{i}.log") for i in range(2 if store == "redis" else 1)]
    prices = sources.bundled(list(TICKERS))
    try:
        for server in servers:
            server.start()
        urls = [s.url for s in servers]
        streams = []
        rng = random.Random(7)
        for n, ticker in enumerate(TICKERS):
            closes = prices[prices["ticker"] == ticker]["close"].tolist()[:LENGTH]
            mode = "latent" if n % 2 == 0 else "ar"
            opened = httpx.post(f"{urls[0]}/v1/sessions", json={"mode": mode, "history": closes[:WARM]}).json()
            streams.append(Stream(opened["session_id"], closes, batches(rng)))
        failures: list[str] = []
        threads = [threading.Thread(target=client_thread, args=(i, urls, streams, failures)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        for stream in streams:
            info = httpx.get(f"{urls[-1]}/v1/sessions/{stream.session_id}").json()
            assert info["next_seq"] == LENGTH
            offline = registry.predictor(info["model"]["version"]).forecast_history(
                [Observation(close=c) for c in stream.closes]
            )
            assert offline is not None and info["forecast"]["as_of_seq"] == offline.as_of_seq
            np.testing.assert_allclose(info["forecast"]["log_return"], offline.log_return, atol=1e-4)
        scraped = [httpx.get(f"{url}/metrics").text for url in urls]
        assert sum(applied(text) for text in scraped) == len(TICKERS) * (LENGTH - WARM)  # each applied once
        assert (sum(micro_batches(text) for text in scraped) > 0) == batching
    finally:
        for server in servers:
            server.stop()
