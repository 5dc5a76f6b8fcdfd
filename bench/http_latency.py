"""One session request's latency over loopback HTTP, beside a bare FastAPI endpoint, in one run.

    .venv/bin/python -m bench.http_latency [--requests 2000] [--torch-threads 1] [--redis-url URL]

Starts ``latentcast serve`` (memory store, or Redis with ``--redis-url``; a
default-size latent GRU, untrained, with a real scaler) and ``bench/bare_app.py``, both under uvicorn on free
loopback ports. One client sends the same sequential requests to each,
alternating, one close price per request, and prints the median and p99 of
each and their ratio. Bounded by ``--seconds``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch

from bench.harness import BENCH_MODEL, bench_env, uvicorn_command
from data import sources
from tests.support.processes import ServiceProcess

WARMUP = 200


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per endpoint")
    parser.add_argument("--torch-threads", type=int, default=1, help="LATENTCAST_TORCH_THREADS of the service")
    parser.add_argument("--seconds", type=float, default=120.0, help="stop measuring after this long")
    parser.add_argument("--redis-url", help="serve sessions from this Redis (default: the memory store)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        env = bench_env(folder, args.torch_threads)
        if args.redis_url:
            env |= {"LATENTCAST_STORE": "redis", "LATENTCAST_REDIS_URL": args.redis_url}
        service = ServiceProcess(env, folder / "serve.log")
        bare = ServiceProcess(env, folder / "bare.log", command=uvicorn_command("bench.bare_app:app"))
        with service, bare:
            service_ms, bare_ms = measure(service.url, bare.url, args.requests, args.seconds)

    store = "redis" if args.redis_url else "memory"
    print(
        f"cores {os.cpu_count()}, service torch threads {args.torch_threads}, torch {torch.__version__}, {store} store"
    )
    print(
        f"model: latent {BENCH_MODEL.cell}, conv {BENCH_MODEL.conv_channels}x{BENCH_MODEL.conv_kernel}, "
        f"hidden {BENCH_MODEL.hidden_size}, horizon {BENCH_MODEL.horizon}"
    )
    print(f"{len(service_ms)} sequential requests each, one close per request, loopback, keep-alive")
    print(f"{'endpoint':<38}{'median ms':>10}{'p99 ms':>10}")
    for name, values in (("POST /v1/sessions/{id}/observations", service_ms), ("bare FastAPI, same body", bare_ms)):
        print(f"{name:<38}{median(values):>10.3f}{p99(values):>10.3f}")
    ratios = median(service_ms) / median(bare_ms), p99(service_ms) / p99(bare_ms)
    print(f"{'ratio service / bare':<38}{ratios[0]:>10.2f}{ratios[1]:>10.2f}")
    return 0


def measure(service_url: str, bare_url: str, requests: int, seconds: float) -> tuple[list[float], list[float]]:
    """Milliseconds per request to each endpoint, alternating, after a warm-up."""
    closes = sources.bundled(["IBM"])["close"].tolist()
    service_ms: list[float] = []
    bare_ms: list[float] = []
    with (
        httpx.Client(base_url=service_url) as service,
        httpx.Client(base_url=bare_url) as bare,
    ):
        session = service.post("/v1/sessions", json={"history": closes[:50]}).json()["session_id"]
        url = f"/v1/sessions/{session}/observations"
        deadline = time.monotonic() + seconds
        for i in range(WARMUP + requests):
            seq = 50 + i
            body = {"seq": seq, "observations": [closes[seq % len(closes)]]}
            for client, out in ((service, service_ms), (bare, bare_ms)):
                started = time.perf_counter()
                response = client.post(url, json=body)
                elapsed = (time.perf_counter() - started) * 1000
                response.raise_for_status()
                if i >= WARMUP:
                    out.append(elapsed)
            if time.monotonic() > deadline:
                break
    return service_ms, bare_ms


def median(values: list[float]) -> float:
    return statistics.median(values)


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


if __name__ == "__main__":
    sys.exit(main())
