"""Each fast path of the append and of training against its plain twin, side by side in one run.

    .venv/bin/python -m bench.fast_paths [--rounds 7] [--requests 100] [--items 500] [--steps 8]

The service's own app (memory store, the default latent GRU untrained with a
real scaler, as ``bench/harness.py`` serves it) runs in this process under
httpx's ASGI transport, so that what is timed is the app's work, not a
network's. Each goal is timed with the path and with its twin in its place,
the variants taking turns in every round; printed are the medians over rounds
and twin / path (above 1.10, the path buys more than 10% on its goal):

- one append's median latency (one close per request, one request at a time,
  sessions in turn): the ``LeanRoute`` against the route as a plain FastAPI
  route (``bench/plain_append_app.py``), and the numpy kernel's step from the
  states' bytes as arrays (``Predictor.advance_stored``) against the torch
  forward;
- appends per second of a bulk request (``--items`` sessions, one close each):
  the kernel's step as arrays against the torch forward;
- training step time of the default model, ``--steps`` optimiser steps per
  timing (``bench/train_speed.py``): the fused GRU (``models/fused_gru.py``)
  against ``nn.GRU``, latent and ar.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import torch
from fastapi import FastAPI
from fastapi.routing import APIRoute

from bench import plain_append_app
from bench.harness import bench_env
from bench.train_speed import measure
from data import sources
from data.features import DEFAULT_FEATURES
from models import fused_gru
from models.config import ModelConfig
from models.predictor import Predictor
from service.config import Settings
from service.http.app import create_app
from training.config import TrainConfig
from training.dataset import TrainingData

GAIN = 1.10  # a path stays where its twin is more than 10% behind on the path's goal
HISTORY = 100  # closes each session opens with
Variants = dict[str, Callable[[], contextlib.AbstractContextManager[None]]]
Runs = dict[str, dict[str, list[float]]]  # per goal and variant, one figure per round


@contextlib.contextmanager
def swapped(owner: Any, name: str, value: Any) -> Iterator[None]:
    """``owner.name`` is ``value`` inside."""
    before = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, before)


def torch_only() -> contextlib.AbstractContextManager[None]:
    """Every stream stepped through the torch forward, none by the kernel, inside."""
    return swapped(Predictor, "_stored_by_kernel", lambda self, steps, picked: {})


def plain_route(app: FastAPI) -> Callable[[], contextlib.AbstractContextManager[None]]:
    """The app's append route as a plain FastAPI route, inside."""
    routes = app.router.routes
    [index] = [i for i, r in enumerate(routes) if isinstance(r, APIRoute) and r.path == plain_append_app.APPEND_PATH]
    plain = APIRoute(plain_append_app.APPEND_PATH, plain_append_app.append, methods=["POST"], response_model=None)
    return lambda: swapped_item(routes, index, plain)


@contextlib.contextmanager
def swapped_item(items: list[Any], index: int, value: Any) -> Iterator[None]:
    before, items[index] = items[index], value
    try:
        yield
    finally:
        items[index] = before


class Sessions:
    """Open sessions fed in order, one close at a time from a real series."""

    def __init__(self, client: httpx.AsyncClient, closes: list[float]) -> None:
        self.client, self.closes = client, closes
        self.next_seq: dict[str, int] = {}

    async def open(self, count: int) -> list[str]:
        ids = []
        for _ in range(count):
            answer = await self.client.post("/v1/sessions", json={"mode": "latent", "history": self.closes[:HISTORY]})
            session_id = answer.raise_for_status().json()["session_id"]
            self.next_seq[session_id] = HISTORY
            ids.append(session_id)
        return ids

    def item(self, session_id: str) -> dict[str, Any]:
        seq = self.next_seq[session_id]
        self.next_seq[session_id] = seq + 1
        return {"session_id": session_id, "seq": seq, "observations": [self.closes[seq % len(self.closes)]]}

    async def append(self, session_id: str) -> float:
        item = self.item(session_id)
        body = {"seq": item["seq"], "observations": item["observations"]}
        started = time.perf_counter()
        answer = await self.client.post(f"/v1/sessions/{session_id}/observations", json=body)
        seconds = time.perf_counter() - started
        assert answer.status_code == 200 and answer.json()["next_seq"] == item["seq"] + 1, answer.text
        return seconds

    async def bulk(self, ids: list[str]) -> float:
        items = [self.item(session_id) for session_id in ids]
        started = time.perf_counter()
        answer = await self.client.post("/v1/observations", json={"items": items})
        seconds = time.perf_counter() - started
        statuses = {entry["status"] for entry in answer.raise_for_status().json()["items"]}
        assert statuses == {200}, statuses
        return seconds


async def service_runs(args: argparse.Namespace, folder: Path) -> Runs:
    """Per goal and variant, one figure per round: median ms of one append, appends per second in bulk."""
    env = bench_env(folder, torch_threads=1)
    settings = Settings(artifacts=Path(env["LATENTCAST_ARTIFACTS"]), registry_poll_seconds=0, log_level="warning")
    app = create_app(settings)
    closes = sources.bundled(["IBM"])["close"].tolist()
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://b") as client:
        single: Variants = {
            "served": contextlib.nullcontext,
            "plain route": plain_route(app),
            "torch": torch_only,
        }
        bulk: Variants = {"served": contextlib.nullcontext, "torch": torch_only}
        runs: Runs = {"append": {name: [] for name in single}, "bulk": {name: [] for name in bulk}}
        sessions = Sessions(client, closes)
        singles, many = await sessions.open(16), await sessions.open(args.items)
        cycle = itertools.cycle(singles)
        for round_ in range(args.rounds + 1):  # the first round warms up, not counted
            for name, variant in rotated(single, round_):
                with variant():
                    times = [await sessions.append(next(cycle)) for _ in range(args.requests)]
                if round_:
                    runs["append"][name].append(statistics.median(times) * 1000)
            for name, variant in rotated(bulk, round_):
                with variant():
                    seconds = min([await sessions.bulk(many) for _ in range(3)])
                if round_:
                    runs["bulk"][name].append(args.items / seconds)
    return runs


def training_runs(args: argparse.Namespace) -> Runs:
    """Per mode, ms per optimiser step with the fused GRU and with ``nn.GRU``, one figure per round."""
    if not fused_gru.available():
        raise SystemExit("the fused GRU is not available here: see the warning above")
    train = TrainConfig(threads=1, progress=False)
    torch.set_num_threads(1)
    data = TrainingData.prepare(sources.bundled(), DEFAULT_FEATURES, ModelConfig().horizon)
    variants: Variants = {
        "fused GRU": contextlib.nullcontext,
        "nn.GRU": lambda: swapped(fused_gru, "applies", lambda rnn, x: False),
    }
    runs: Runs = {f"train {mode}": {name: [] for name in variants} for mode in ("latent", "ar")}
    for round_ in range(args.rounds + 1):
        for mode in ("latent", "ar"):
            for name, variant in rotated(variants, round_):
                with variant():
                    steps_per_s = measure(mode, data, train, args.steps)["steps_per_s"]
                if round_:
                    runs[f"train {mode}"][name].append(1000 / steps_per_s)
    return runs


def rotated(variants: Variants, round_: int) -> list[tuple[str, Callable[[], contextlib.AbstractContextManager[None]]]]:
    """The variants in turn, starting one further each round: none always first."""
    items = list(variants.items())
    k = round_ % len(items)
    return items[k:] + items[:k]


def report(runs: Runs, args: argparse.Namespace) -> None:
    config = ModelConfig()
    print(
        f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.1f}, 1 torch thread, torch {torch.__version__}; "
        f"default model ({config.mode} {config.cell}, hidden {config.hidden_size}); medians of {args.rounds} rounds"
    )
    goals = {
        "append": ("ms, one append's median latency", False),
        "bulk": (f"appends/s, bulk of {args.items}", True),
        "train latent": ("ms per training step, latent", False),
        "train ar": ("ms per training step, ar", False),
    }
    for goal, variants in runs.items():
        what, higher_better = goals[goal]
        medians = {name: statistics.median(values) for name, values in variants.items()}
        path, *twins = medians
        shown = ", ".join(f"{name} {value:.3g}" for name, value in medians.items())
        print(f"{what}: {shown}")
        for twin in twins:
            ratio = medians[path] / medians[twin] if higher_better else medians[twin] / medians[path]
            verdict = "keep" if ratio > GAIN else "twin within 10%"
            print(f"  {path} buys {ratio:.2f}x over {twin} ({verdict})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="rounds of every variant, after one to warm up")
    parser.add_argument("--requests", type=int, default=100, help="single appends per variant and round")
    parser.add_argument("--items", type=int, default=500, help="sessions in each bulk request")
    parser.add_argument("--steps", type=int, default=8, help="optimiser steps per training timing")
    parser.add_argument("--skip-training", action="store_true", help="only the service's paths")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as name:
        runs = asyncio.run(service_runs(args, Path(name)))
    if not args.skip_training:
        runs |= training_runs(args)
    report(runs, args)


if __name__ == "__main__":
    main()
