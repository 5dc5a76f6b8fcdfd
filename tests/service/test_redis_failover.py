"""A Redis Cluster master killed under a session: its replica takes over, and a client that resends loses nothing.

Redis replicates asynchronously: the appends a master acknowledged last may not
have reached its replica when it dies (here made sure of by breaking the
replication link before the last ones). The store's answer is the session rules':
the promoted replica's ``next_seq`` is where the session stands, and a client
resending its acknowledged observations from there gets each applied once.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
import redis

from latentcast.errors import UnavailableError
from models.series import Observation
from service.stores import StoreLimits
from service.stores.redis import RedisSessionStore
from tests.service.store_records import record, update
from tests.support.redis_processes import RedisClusterProcess, RedisProcess

pytestmark = pytest.mark.slow  # a cluster of six processes and a failover: some seconds

FAILOVER_SECONDS = 60.0
APPENDS = 40
REPLICATED = 30  # appends the replica receives before it stalls
T = TypeVar("T")


async def until_served(call: Callable[[], Awaitable[T]], seconds: float = FAILOVER_SECONDS) -> T:
    """``call()``'s answer once the cluster serves it again (503s while it elects a new master)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await call()
        except UnavailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def serving(cluster: RedisClusterProcess, key: str) -> tuple[RedisProcess, RedisProcess]:
    """The master serving ``key``'s slot, and its replica."""
    nodes = redis.RedisCluster.from_url(cluster.url)
    port = nodes.get_node_from_key(key).port
    nodes.close()
    master = next(node for node in cluster.nodes if node.port == port)
    with redis.Redis(port=port) as client:
        replica_port = int(client.info("replication")["slave0"]["port"])
    return master, next(node for node in cluster.nodes if node.port == replica_port)


async def until_replicated(master: int, replica: int, seconds: float = FAILOVER_SECONDS) -> None:
    """Return once the replica has received everything the master wrote."""
    deadline = time.monotonic() + seconds
    with redis.Redis(port=master) as leader, redis.Redis(port=replica) as follower:
        while time.monotonic() < deadline:
            written = int(leader.info("replication")["master_repl_offset"])
            if int(follower.info("replication").get("slave_repl_offset", -1)) >= written:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"the replica on port {replica} did not catch up in {seconds} s")


def test_a_killed_master_s_replica_takes_over_and_a_resend_loses_nothing(tmp_path: Path):
    with RedisClusterProcess(tmp_path, masters=3, replicas=1) as cluster:
        asyncio.run(failover(cluster))


async def failover(cluster: RedisClusterProcess) -> None:
    limits = StoreLimits(600.0, 100, 1000, 4)
    store = RedisSessionStore(cluster.url, limits, prefix="failover", cluster=True, timeout=1.0)
    try:
        assert await store.create(record("s1", retained=(), next_seq=0))
        sent = [Observation(close=100.0 + n) for n in range(APPENDS)]
        for seq, obs in enumerate(sent[:REPLICATED]):  # each acknowledged before the next is sent
            assert await store.commit("s1", seq, update(seq + 1, (obs,)))
        master, replica = serving(cluster, "failover:{s1}")
        await until_replicated(master.port, replica.port)
        # the replication link breaks (the replica stalled, the master dropping it): the next appends are
        # acknowledged by the master alone, as when replication lags behind
        replica.pause(True)
        with redis.Redis(port=master.port) as client:
            client.execute_command("CLIENT", "KILL", "TYPE", "replica")
        for seq in range(REPLICATED, APPENDS):
            assert await store.commit("s1", seq, update(seq + 1, (sent[seq],)))
        master.kill()  # SIGKILL, no shutdown
        replica.pause(False)
        cluster.wait_ok(FAILOVER_SECONDS)
        assert master.port not in [node.port for node in cluster.masters()]
        # the promoted replica's copy lacks the acknowledged appends it never received
        stored = await until_served(lambda: store.get("s1", observations=None))
        assert stored is not None and stored.next_seq == REPLICATED
        assert [o.close for o in stored.retained] == [o.close for o in sent[:REPLICATED]]
        # the client resends from the session's expected seq: every acknowledged observation, once
        for seq in range(stored.next_seq, APPENDS):
            assert await until_served(functools.partial(store.commit, "s1", seq, update(seq + 1, (sent[seq],))))
        stored = await store.get("s1", observations=None)
        assert stored is not None and stored.next_seq == APPENDS
        assert [o.close for o in stored.retained] == [o.close for o in sent]
        # and new sessions open and count as before
        assert await store.create(record("s2"))
        assert await store.count() == 2
    finally:
        await store.close()
