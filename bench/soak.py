"""Soak with faults: many sessions streamed by a misbehaving client, then checked against offline replays.

    .venv/bin/python -m bench.soak --store memory
    .venv/bin/python -m bench.soak --store redis --servers 2
    .venv/bin/python -m bench.soak --store redis --servers 2 --retrain
    .venv/bin/python -m bench.soak --store redis --servers 2 --via bulk     # or --via stream
    .venv/bin/python -m bench.soak --store redis --redis-cluster --servers 2

Trains small models on the bundled prices into a fresh registry (two versions
per mode; the first is champion), starts ``latentcast serve`` on loopback ports
(and a redis-server for ``--store redis`` unless ``--redis-url`` names one; a
3-master Redis Cluster with ``--redis-cluster``),
opens ``--sessions`` sessions (ar and latent in turn) on four API keys and feeds each real daily bars
with random retries, overlaps, dropped connections and out-of-order batches: one
append per request (``--via rest``, ``tests/support/soak_client.py``), or the batches of
a key's sessions together in bulk requests or WebSocket messages (``--via bulk``
or ``stream``, ``tests/support/soak_market.py``). With ``--retrain``, ``latentcast retrain``
runs against the same registry while the sessions stream; the service picks up
its champions by polling, and the second half of the sessions opens on them.

Then every session's seq, forecast and retained observations are compared with
an offline replay (the retained ones through a migration to another version),
and a table says what was sent, applied, retried, dropped, refused, and whether
anything was lost or applied twice. Bounded by ``--seconds`` and the counts;
traffic goes to 127.0.0.1 only. Exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path

from tests.support.redis_processes import redis_cluster, redis_server
from tests.support.soak import passed, retrain_overlapped, soak, table
from tests.support.soak_market import VIAS
from tests.support.soak_setup import SoakPlan, prepare_registry, service_env, services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["memory", "redis"], default="memory")
    parser.add_argument("--redis-url", help="an existing Redis (default: start a redis-server on a free port)")
    parser.add_argument("--redis-cluster", action="store_true", help="the Redis is a cluster (started if no URL)")
    parser.add_argument("--servers", type=int, default=1, help="service processes sharing the store (redis only)")
    parser.add_argument("--sessions", type=int, default=SoakPlan.sessions)
    parser.add_argument("--observations", type=int, default=SoakPlan.observations, help="per session")
    parser.add_argument("--seconds", type=float, default=SoakPlan.seconds, help="stop streaming after this long")
    parser.add_argument("--retrain", action="store_true", help="run a retrain that promotes new champions meanwhile")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--via", choices=["rest", *VIAS], default="rest", help="how appends are sent")
    args = parser.parse_args(argv)
    if args.servers > 1 and args.store == "memory":
        parser.error("several servers need --store redis")
    plan = SoakPlan(sessions=args.sessions, observations=args.observations, seconds=args.seconds, seed=args.seed)
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        print("training the first versions ...", file=sys.stderr)
        registry = prepare_registry(Path(folder) / "artifacts")
        redis_url = args.redis_url
        if args.store == "redis" and not redis_url:
            redis_url = stack.enter_context(redis_cluster() if args.redis_cluster else redis_server())
        poll = 1.0 if args.retrain else 0
        env = service_env(registry, args.store, redis_url, plan, poll, cluster=args.redis_cluster)
        urls = stack.enter_context(services(env, args.servers, Path(folder)))
        print(f"streaming {plan.sessions} sessions to {', '.join(urls)} ...", file=sys.stderr)
        result = asyncio.run(soak(urls, registry, plan, args.retrain, args.via))
    print(table(f"{args.store} cluster" if args.redis_cluster else args.store, args.servers, result))
    if result.retrain is not None:
        print(f"retrain: {retrain_summary(result.retrain)}")
    for problem in (result.totals.problems + result.mismatches)[:20]:
        print(f"  {problem}")
    ok = passed(result) and (result.retrain is None or retrain_overlapped(result.retrain))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def retrain_summary(job: dict[str, object]) -> str:
    modes = job.get("modes", [])
    assert isinstance(modes, list)
    promoted = ", ".join(f"{m['mode']} {m['champion_before']} -> {m['champion_after']}" for m in modes if m["promoted"])
    return (
        f"job {job['job_id']} {job['status']} in {job['seconds']} s, promoted: {promoted or 'nothing'}; served "
        f"{job['seconds_into_soak']} s into the soak while {job['streaming_meanwhile']} sessions were streaming "
        f"(they stay on their version); {job['sessions_on_new_champions']} sessions opened on the new champions"
    )


if __name__ == "__main__":
    sys.exit(main())
