"""Real Redis for the tests and the benchmarks: a redis-server, or a 3-master Redis Cluster, on free ports.

Every test and benchmark that needs Redis starts it here, through the same
readiness poll as the service (``tests/support/processes.py``).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from tests.support.processes import POLL_SECONDS, START_SECONDS, debian_tool, free_port, log_tail, wait_until


class RedisProcess:
    """A real redis-server on a free loopback port, its files in ``folder``; a context manager.

    ``cluster``: a node of a Redis Cluster (``RedisClusterProcess`` joins them), with
    ``node_timeout_ms`` before its peers count it as failed.
    """

    def __init__(
        self, folder: Path, append_only: bool = True, cluster: bool = False, node_timeout_ms: int = 1000
    ) -> None:
        self.folder = folder
        self.append_only = append_only
        self.cluster = cluster
        self.node_timeout_ms = node_timeout_ms
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisProcess:
        binary = debian_tool("redis-server", "redis-server", "the Redis store and its benchmarks")
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder), "--save", ""]
        command += ["--appendonly", "yes" if self.append_only else "no", "--loglevel", "warning"]
        if self.cluster:
            command += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{self.port}.conf"]
            # the bus port on a free port of its own (by default it is the port + 10000, which may be taken)
            command += ["--cluster-port", str(free_port()), "--cluster-node-timeout", str(self.node_timeout_ms)]
        log = self.folder / "redis.log"
        with open(log, "ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        try:
            wait_until(lambda: _pings(client), self.process, f"redis-server on port {self.port}", log)
        finally:
            client.close()
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
            self.process.terminate()
            self.process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL: no shutdown, as in a crash."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def pause(self, paused: bool) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)

    def __enter__(self) -> RedisProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisClusterProcess:
    """A real Redis Cluster of ``masters`` masters with ``replicas`` replicas each, on free loopback ports.

    Its nodes are ``RedisProcess`` es in subfolders of ``folder``, joined by
    ``redis-cli --cluster create``; ready once every node reports ``cluster_state:ok``.
    ``url`` names the first node (a cluster client finds the others from it).
    """

    def __init__(self, folder: Path, masters: int = 3, replicas: int = 0, append_only: bool = True) -> None:
        self.nodes = []
        for n in range(masters * (1 + replicas)):
            (folder / f"node{n}").mkdir(parents=True, exist_ok=True)
            self.nodes.append(RedisProcess(folder / f"node{n}", append_only, cluster=True))
        self.replicas = replicas
        self.log = folder / "cluster-create.log"
        self.url = self.nodes[0].url

    def start(self) -> RedisClusterProcess:
        try:
            for node in self.nodes:
                node.start()
            cli = debian_tool("redis-cli", "redis-tools", "the Redis Cluster tests and benchmarks")
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            command = [cli, "--cluster", "create", *addresses, "--cluster-replicas", str(self.replicas)]
            with open(self.log, "ab") as out:
                subprocess.run([*command, "--cluster-yes"], stdout=out, stderr=subprocess.STDOUT, check=True)
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ok(self, seconds: float = START_SECONDS) -> None:
        """Return once every running node reports ``cluster_state:ok``, sees every slot served by a live
        master, and (a replica) has synchronised with its master.

        After a master is killed, that is once its replica has been promoted.
        """
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            running = {node.port for node in self.nodes if node.process and node.process.poll() is None}
            if all(_cluster_ok(port, running) for port in running):
                return
            time.sleep(POLL_SECONDS)
        raise RuntimeError(f"the Redis Cluster did not reach cluster_state:ok in {seconds} s:\n{log_tail(self.log)}")

    def masters(self) -> list[RedisProcess]:
        """The running nodes that are masters now (after a failover, the promoted replicas among them)."""
        running = [node for node in self.nodes if node.process and node.process.poll() is None]
        return [node for node in running if _role(node.port) == "master"]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisClusterProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def redis_server(append_only: bool = True) -> Iterator[str]:
    """A throwaway redis-server in a temporary folder; yields its URL, stops it after."""
    with tempfile.TemporaryDirectory() as folder, RedisProcess(Path(folder), append_only) as server:
        yield server.url


@contextlib.contextmanager
def redis_cluster(append_only: bool = True) -> Iterator[str]:
    """A throwaway 3-master Redis Cluster in a temporary folder; yields its first node's URL, stops it after."""
    with tempfile.TemporaryDirectory() as folder, RedisClusterProcess(Path(folder), append_only=append_only) as nodes:
        yield nodes.url


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def _cluster_ok(port: int, running: set[int]) -> bool:
    client = redis.Redis(port=port, socket_connect_timeout=1, socket_timeout=1, decode_responses=True)
    try:
        info = str(client.execute_command("CLUSTER", "INFO"))
        if "cluster_state:ok" not in info or "cluster_slots_ok:16384" not in info:
            return False
        # CLUSTER NODES: id address flags master ping pong epoch link-state slots...
        nodes = [line.split() for line in str(client.execute_command("CLUSTER", "NODES")).splitlines()]
        serving = [fields for fields in nodes if len(fields) > 8]
        if not all("fail" not in fields[2] and fields[7] == "connected" for fields in serving):
            return False
        # a killed master may still look connected until its peers time out: its slots must have moved
        if any(int(fields[1].split("@")[0].rsplit(":", 1)[1]) not in running for fields in serving):
            return False
        # a replica that never synchronised could not take over from its master
        replication = client.info("replication")
        return replication.get("role") == "master" or replication.get("master_link_status") == "up"
    except redis.RedisError:
        return False
    finally:
        client.close()


def _role(port: int) -> str:
    client = redis.Redis(port=port, socket_connect_timeout=1, socket_timeout=1)
    try:
        return str(client.info("replication").get("role", ""))
    except redis.RedisError:
        return ""
    finally:
        client.close()
