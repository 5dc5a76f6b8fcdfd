"""Server CPU per append with live scoring on against off, in one run.

    .venv/bin/python -m bench.live_scores [--sessions 16] [--appends 100] [--turns 80] [--rounds 4]
        [--redis-url URL] [--shadow {ar,latent}] [--bulk] [--alike]

Starts two ``latentcast serve`` processes on the same model (the default-size
latent GRU, untrained, with a real scaler; memory store, or Redis with
``--redis-url``), one with ``LATENTCAST_LIVE_SCORES=true`` and one with
``false``. One client opens ``--sessions`` sessions on each, then sends
``--appends`` appends of one close (to the sessions in turn) to one server, then
as many to the other, ``--turns`` times each (which goes first alternates), one
request at a time, and reads the server's CPU from ``/proc`` (each thread's, to
the nanosecond) around its turn: short turns, so that both servers meet the
same load on a shared machine, each turn of one paired with the other's next
to it. It prints the CPU per append of each server, the median of the pairs'
ratios on / off with their quartiles and the median's 95% interval
(``tests/support/paired_turns.py``), the ratio of the totals and of each half's
(a ratio that moves between the halves is noise), and whether the median meets
the goal: met when its whole interval is at most the goal. The turns are
spread over ``--rounds`` pairs of servers started one after the other (each
round's median is printed too): what one pair of processes costs apart from
their settings, which varies from run to run, averages out. Which of the two
starts first alternates from round to round; both run with the same hash seed
and, on two cores or more, on one core, with the client on the others
(``Placement``): unpinned, the first-started server of a pair was the cheaper
in every round of a run where both scored. The client's CPU
is not counted; a request at a time, so micro-batching holds one append per
batch, as a lone client's does.

With ``--shadow MODE`` both servers score, and the sessions are of the other
mode; one server gives every session a shadow of ``MODE`` (``LATENTCAST_SHADOW=1``,
both modes' champions of the default size, untrained), the other none: the
ratio is what the shadow costs.

With ``--bulk`` each request is a bulk append (``POST /v1/observations``) of one
close to every session, so that the appends of a request are planned as one
batch, their shadows with them: the cost per append of a server under many
sessions rather than one lone client's.

With ``--alike`` both servers score: the ratio of two servers that differ in
nothing, what the bench reads when there is no difference to read.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
from pathlib import Path

import httpx
import torch

from bench.harness import BENCH_MODEL, bench_env, default_checkpoint
from data import sources
from models.config import MODES
from tests.support.paired_turns import PairedRatios, Placement, cpu_seconds, thread_cpu
from tests.support.processes import ServiceProcess
from training.registry import Registry

WARM = 50
SHADOW_WARM = 70  # an ar model of the default window forecasts from 61 closes
# the goals of the ratio on / off (docs/performance.md, docs/live.md): scoring, and a shadow by its mode
SCORING_GOAL = 1.10
SHADOW_GOALS = {"latent": 1.5}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=16, help="sessions per server")
    parser.add_argument("--appends", type=int, default=100, help="appends per server and turn")
    parser.add_argument("--turns", type=int, default=80, help="turns per server; which goes first alternates")
    parser.add_argument(
        "--rounds", type=int, default=4, help="pairs of servers, one after the other, sharing the turns"
    )
    parser.add_argument("--torch-threads", type=int, default=1, help="LATENTCAST_TORCH_THREADS of the services")
    parser.add_argument("--redis-url", help="serve sessions from this Redis (default: the memory store)")
    parser.add_argument("--shadow", choices=MODES, help="shadows of this mode on one server, none on the other")
    parser.add_argument("--bulk", action="store_true", help="one bulk request of a close to every session at a time")
    parser.add_argument("--alike", action="store_true", help="both servers score: what the bench reads of no change")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.turns % args.rounds:
        parser.error(f"--turns {args.turns} must be a multiple of --rounds {args.rounds}")
    if args.bulk and args.appends % args.sessions:
        parser.error(f"--appends {args.appends} with --bulk must be a multiple of --sessions {args.sessions}")

    closes = sources.bundled(["IBM"])["close"].tolist()
    warm = WARM if args.shadow is None else SHADOW_WARM
    needed = warm + args.turns // args.rounds * args.appends // args.sessions + 2
    if needed > len(closes):
        parser.error(f"{needed} closes per session are more than the {len(closes)} bundled: fewer appends or turns")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        # the same hash seed in both servers of a pair: their dicts and sets alike
        env = bench_env(folder, args.torch_threads) | {"PYTHONHASHSEED": "0"}
        placement = Placement.of(os.sched_getaffinity(0))
        placement.pin_client()
        if args.redis_url:
            # keys of this run's own: the sums of an earlier run on the same server are not read as this one's
            prefix = f"bench-{os.getpid()}"
            env |= {
                "LATENTCAST_STORE": "redis",
                "LATENTCAST_REDIS_URL": args.redis_url,
                "LATENTCAST_REDIS_PREFIX": prefix,
            }
        mode, off_env = "latent", {"LATENTCAST_LIVE_SCORES": str(args.alike).lower()}
        if args.shadow is not None:
            registry = Registry(Path(env["LATENTCAST_ARTIFACTS"]))
            mode = next(m for m in MODES if m != args.shadow)
            # an ar champion of the default size beside the harness's latent one: one serves, one shadows
            registry.promote(registry.register(default_checkpoint(dataclasses.replace(BENCH_MODEL, mode="ar"))).version)
            env |= {"LATENTCAST_LIVE_SCORES": "true", "LATENTCAST_SHADOW": "1"}
            off_env = {"LATENTCAST_SHADOW": "0"}
        seconds: list[list[float]] = [[], []]
        medians: list[float] = []
        settled: dict[str, int] = {}
        for round_ in range(args.rounds):
            on_side, off_side, round_settled = run_round(
                env, off_env, folder / str(round_), closes, mode, warm, args, placement
            )
            medians.append(statistics.median(a / b for a, b in zip(on_side, off_side, strict=True)))
            seconds[0] += on_side
            seconds[1] += off_side
            for name, count in round_settled.items():
                settled[name] = settled.get(name, 0) + count

    appends = args.turns * args.appends
    on_us, off_us = (sum(side) / appends * 1e6 for side in seconds)
    ratios = PairedRatios.of(*seconds)
    store = "redis" if args.redis_url else "memory"
    print(f"cores {os.cpu_count()}, load {os.getloadavg()[0]:.1f}, torch {torch.__version__}, {store} store")
    print(
        f"model: latent {BENCH_MODEL.cell}, conv {BENCH_MODEL.conv_channels}x{BENCH_MODEL.conv_kernel}, "
        f"hidden {BENCH_MODEL.hidden_size}, horizon {BENCH_MODEL.horizon}; {args.sessions} sessions, "
        f"{args.turns} turns of {args.appends} appends per server{' in bulk requests' if args.bulk else ''} "
        f"in {args.rounds} rounds; "
        f"one-step forecasts scored {settled}"
    )
    on_name, off_name = ("scoring on", "off") if args.shadow is None else (f"{mode} with {args.shadow} shadow", "none")
    print(f"server CPU per append, all turns: {on_name} {on_us:.0f} us, {off_name} {off_us:.0f} us")
    print(
        f"ratio per pair of turns: median {ratios.median:.3f}x, quartiles {ratios.quartiles[0]:.3f}x to "
        f"{ratios.quartiles[1]:.3f}x, the median's 95% interval {ratios.interval[0]:.3f}x to "
        f"{ratios.interval[1]:.3f}x ({ratios.pairs} pairs)"
    )
    print("each round's median: " + ", ".join(f"{median:.3f}x" for median in medians))
    print(f"ratio of the totals: {ratios.total:.3f}x (halves {ratios.halves[0]:.3f}x, {ratios.halves[1]:.3f}x)")
    goal = SCORING_GOAL if args.shadow is None else SHADOW_GOALS.get(args.shadow)
    if goal is not None:
        print(f"goal: median <= {goal:.2f}x: {ratios.verdict(goal)}")
    return 0


def run_round(
    env: dict[str, str],
    off_env: dict[str, str],
    folder: Path,
    closes: list[float],
    mode: str,
    warm: int,
    args: argparse.Namespace,
    placement: Placement,
) -> tuple[list[float], list[float], dict[str, int]]:
    """One pair of servers fed in alternating turns: each one's CPU seconds per turn, and the one-step forecasts
    the first settled, by mode. The scoring one starts first in even rounds, the other in odd ones."""
    folder.mkdir()
    if "LATENTCAST_REDIS_PREFIX" in env:  # keys of this round's own
        env = env | {"LATENTCAST_REDIS_PREFIX": f"{env['LATENTCAST_REDIS_PREFIX']}-{folder.name}"}
    on = ServiceProcess(env | {"LATENTCAST_LIVE_SCORES": "true"}, folder / "on.log")
    off_prefix = env.get("LATENTCAST_REDIS_PREFIX", "") + "off"
    off = ServiceProcess(env | off_env | {"LATENTCAST_REDIS_PREFIX": off_prefix}, folder / "off.log")
    first, second = (on, off) if int(folder.name) % 2 == 0 else (off, on)
    with first, second, httpx.Client(base_url=on.url) as on_client, httpx.Client(base_url=off.url) as off_client:
        placement.pin_server(on.pid)
        placement.pin_server(off.pid)
        feeds = [
            Feed(on.pid, on_client, closes, args.sessions, mode, warm, args.bulk),
            Feed(off.pid, off_client, closes, args.sessions, mode, warm, args.bulk),
        ]
        seconds: list[list[float]] = [[], []]
        for turn in range(args.turns // args.rounds):
            order = (0, 1) if turn % 2 == 0 else (1, 0)
            for i in order:
                seconds[i].append(feeds[i].round(args.appends))
        models = on_client.get("/v1/models/live").json()["models"]
    return seconds[0], seconds[1], {m["mode"]: m["horizons"][0]["count"] for m in models}


class Feed:
    """Sessions on one server, fed one close per request in turn."""

    def __init__(
        self, pid: int, client: httpx.Client, closes: list[float], sessions: int, mode: str, warm: int, bulk: bool
    ) -> None:
        self.pid = pid
        self.bulk = bulk
        self.client = client
        self.closes = closes
        self.ids = []
        for _ in range(sessions):
            reply = client.post("/v1/sessions", json={"mode": mode, "history": closes[:warm]})
            reply.raise_for_status()
            self.ids.append(reply.json()["session_id"])
        self.next_seq = [warm] * sessions
        self.turn = 0

    def round(self, appends: int) -> float:
        """The server's CPU seconds over ``appends`` appends, spread over the sessions in turn."""
        before = thread_cpu(self.pid)
        if self.bulk:
            for _ in range(appends // len(self.ids)):
                items = [
                    {"session_id": session_id, "seq": seq, "observations": [self.closes[seq]]}
                    for session_id, seq in zip(self.ids, self.next_seq, strict=True)
                ]
                reply = self.client.post("/v1/observations", json={"items": items})
                reply.raise_for_status()
                assert all(item["status"] == 200 for item in reply.json()["items"]), reply.text
                self.next_seq = [seq + 1 for seq in self.next_seq]
            return cpu_seconds(before, thread_cpu(self.pid))
        for _ in range(appends):
            i = self.turn % len(self.ids)
            seq = self.next_seq[i]
            body = {"seq": seq, "observations": [self.closes[seq]]}
            reply = self.client.post(f"/v1/sessions/{self.ids[i]}/observations", json=body)
            reply.raise_for_status()
            self.next_seq[i] += 1
            self.turn += 1
        return cpu_seconds(before, thread_cpu(self.pid))


if __name__ == "__main__":
    raise SystemExit(main())
