"""Commands to one Redis server or a Redis Cluster, sent together when issued together.

``Commands`` queues every command issued during one turn of the event loop and
sends the queue as one pipeline: the items of a bulk request (gathered
coroutines, each reading or committing its own session) cost one round trip,
or one per cluster node, sent to the nodes at once. A command's error reaches
its caller alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from latentcast.errors import UnavailableError
from service.batching import settle
from service.stores.redis_scripts import Script

log = logging.getLogger(__name__)

Client = aioredis.Redis | RedisCluster
_Queued = tuple[tuple[Any, ...], "asyncio.Future[Any]"]


def connect(url: str, cluster: bool, timeout: float) -> Client:
    """A client of the server at ``url``, or of the cluster that node at ``url`` belongs to."""
    # One retry on a fresh connection when a pooled one turns out dead (Redis restarted since it
    # was last used), never after a timeout (the command may be running). Retrying is safe: a
    # read is one, a create of a record already there is a no-op (its id is random), a commit is
    # a compare-and-set on next_seq (a retry of one applied finds next_seq moved on, and the
    # session service answers from the stored reply), a delete of a deleted record is a no-op.
    retry = Retry(NoBackoff(), retries=1, supported_errors=(RedisConnectionError,))
    # RESP2: answers as the flat arrays the store reads (a hash as field, value, ...)
    options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": retry}
    if cluster:
        # a cluster client also follows MOVED answers and a failover's new topology by itself
        return RedisCluster.from_url(url, protocol=2, **options)
    return aioredis.Redis.from_url(url, protocol=2, **options)


class Commands:
    """Redis commands and scripts, each awaited alone and sent with those issued in the same loop turn."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._queue: list[_Queued] = []
        self._sending: set[asyncio.Task[None]] = set()
        self.sent = 0  # pipelines (or lone commands) sent: round trips, one per node on a cluster
        self._loading: dict[str, asyncio.Task[Any]] = {}

    async def call(self, *command: Any) -> Any:
        """The answer to ``command`` (``"HGET", key, field``); its error raised here."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((command, future))
        if len(self._queue) == 1:
            asyncio.get_running_loop().call_soon(self._send_queue)
        return await future

    async def run(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        """``script`` run on ``keys`` with ``args``, loaded first if the server does not know it."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        try:
            return await self.call(*command)
        except NoScriptError:
            # a restarted server or a promoted replica: load it, once for every caller that met its absence
            await self.load(script)
            return await self.call(*command)

    async def load(self, script: Script) -> None:
        """Make ``script`` known to the server (to every primary of a cluster)."""
        task = self._loading.get(script.sha)
        if task is None:
            task = asyncio.ensure_future(self.client.script_load(script.source))
            self._loading[script.sha] = task
            task.add_done_callback(lambda _: self._loading.pop(script.sha, None))
        await asyncio.shield(task)

    def _send_queue(self) -> None:
        queued, self._queue = self._queue, []
        self.sent += 1
        task = asyncio.get_running_loop().create_task(self._send(queued))
        self._sending.add(task)  # a reference, so that the task is not collected while it runs
        task.add_done_callback(self._sending.discard)

    async def _send(self, queued: list[_Queued]) -> None:
        try:
            answers = await self._answers([command for command, _ in queued])
        except BaseException:  # cancelled (the store closing): so are its callers
            for _, future in queued:
                future.cancel()
            raise
        settle([future for _, future in queued], answers)

    async def _answers(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Each command's answer or error, in order; one pipeline for several (split by node on a cluster)."""
        try:
            if len(commands) == 1:
                return [await self.client.execute_command(*commands[0])]
            pipe = self.client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute(raise_on_error=False))
        except Exception as exc:  # the whole pipeline failed: every caller gets its error
            return [exc] * len(commands)

    async def close(self) -> None:
        await asyncio.gather(*self._sending, return_exceptions=True)
        await self.client.aclose()


@asynccontextmanager
async def available(url: str) -> AsyncIterator[None]:
    """Turn Redis failures into ``UnavailableError`` (503): its kind for clients, the server in the log.

    The error's own text names the host and port (``Timeout reading from 10.0.0.5:6379``):
    an answer never holds it, and the log never holds the URL's password.
    """
    try:
        yield
    except (RedisError, RedisClusterException, OSError) as exc:
        where = url.split("://", 1)[-1].rsplit("@", 1)[-1]
        log.warning("redis at %s: %s: %s", where, type(exc).__name__, exc)
        raise UnavailableError(f"session store is unavailable: redis {type(exc).__name__}") from exc


def text(answer: bytes | str) -> str:
    """A Redis answer as text (answers are bytes: the store reads binary values too)."""
    return answer.decode() if isinstance(answer, bytes) else answer
