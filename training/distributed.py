"""Data-parallel training on ``torch.distributed``: the process group, the shard, the wrapped module.

A ``World`` is this process's place among the training processes. With one
process it is a no-op: the module is not wrapped and sums are local. With
several, each process reads its ``Shard`` of every batch (or of the
validation tickers), ``DistributedDataParallel`` averages the gradients and
``World.sum`` adds loss sums and counts over processes, so every process takes
the same optimiser step and the same early-stopping decision.

Processes are started by PyTorch's own launchers: ``torchrun`` (which sets
``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``) or ``spawn``
below for ``N`` processes on one host (``torch.multiprocessing.spawn``).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

from latentcast.errors import ConfigError

DEVICES = ("cpu", "cuda", "auto")
LOOPBACK = "127.0.0.1"
GATHERED = 1 << 18  # floats of every process's copy of a bucket together, up to which gloo exchanges it by all-gather
CPU = torch.device("cpu")


@dataclass(frozen=True)
class Shard:
    """Which of ``count`` equal parts of the data this process reads."""

    rank: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.count:
            raise ConfigError(f"shard rank {self.rank} is outside 0..{self.count - 1}")

    def take(self, items: Sequence[Any]) -> list[Any]:
        """Every ``count``-th item from the ``rank``-th: the parts together are ``items``."""
        return list(items[self.rank :: self.count])


@dataclass(frozen=True)
class World:
    """This process among ``size`` training processes on ``device``."""

    rank: int = 0
    size: int = 1
    device: torch.device = CPU

    @property
    def main(self) -> bool:
        """The process that writes the checkpoint and registers it."""
        return self.rank == 0

    @property
    def shard(self) -> Shard:
        return Shard(self.rank, self.size)

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` on this device, behind ``DistributedDataParallel`` when there are several processes."""
        model.to(self.device)
        if self.size == 1:
            return model
        if self.device.type == "cuda":
            return DistributedDataParallel(model, device_ids=[self.device.index])
        wrapped = DistributedDataParallel(model)
        # through a lambda: DDP checks a hook's annotations as objects, and this module's are strings
        wrapped.register_comm_hook(None, lambda group, bucket: gathered_mean(group, bucket))
        return wrapped

    def sum(self, values: Sequence[float]) -> list[float]:
        """``values`` added over every process (float64, so counts stay exact)."""
        if self.size == 1:
            return [float(v) for v in values]
        device = self.device if dist.get_backend() == "nccl" else CPU
        total = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(total)
        return [float(v) for v in total.cpu()]

    def agree(self, value: Any) -> Any:
        """The main process's ``value``, on every process (the others' ``value`` is ignored)."""
        if self.size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


class Orders:
    """What the main process decided, sent to the others as it decides: they follow, in the same order.

    ``close`` sends None, which tells every other process to stop waiting for
    orders; it is sent once, whatever ended the main process's work.
    """

    def __init__(self, world: World) -> None:
        self.world = world
        self.open = world.size > 1

    def send(self, order: Any) -> None:
        if self.open:
            self.world.agree(order)

    def close(self) -> None:
        if self.open:
            self.world.agree(None)
            self.open = False


def gathered_mean(group: dist.ProcessGroup | None, bucket: dist.GradBucket) -> torch.futures.Future[Tensor]:
    """DDP's exchange on gloo: every process's bucket gathered whole, then averaged in rank order.

    gloo's all-reduce of a bucket as small as these models' gradients takes
    several round trips between processes; one all-gather takes one, which
    costs less at these sizes (``python -m bench.exchange`` compares the two;
    docs/performance.md gives its figures). Every process adds the same values
    in the same order, so all hold the same mean. Where every process's copy
    together would exceed ``GATHERED`` floats, the bucket goes through the
    all-reduce, which holds no copy but its own and is as fast there.
    """
    flat = bucket.buffer()
    size = dist.get_world_size(group)
    if size * flat.numel() > GATHERED:
        return default_hooks.allreduce_hook(group, bucket)  # type: ignore[arg-type]  # None: the default group
    everyone = torch.empty(size * flat.numel(), dtype=flat.dtype, device=flat.device)
    future = dist.all_gather_single(everyone, flat, group=group, async_op=True).get_future()

    def mean(_: torch.futures.Future[Any]) -> Tensor:
        return everyone.view(size, -1).sum(0).div_(size)

    return future.then(mean)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``cpu``, ``cuda`` (this process's GPU; an error without one) or ``auto`` (cuda when present)."""
    if name not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device cuda was asked for, but torch sees no CUDA device")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return CPU


def launched() -> bool:
    """Whether a launcher started this process as one of several (``WORLD_SIZE`` above 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(device: str = "cpu") -> World:
    """Join the process group the launcher described in the environment (one process: no group).

    gloo on CPU, nccl when training on CUDA.
    """
    rank, size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    where = resolve_device(device, int(os.environ.get("LOCAL_RANK", "0")))
    if size > 1 and not dist.is_initialized():
        if where.type == "cuda":
            torch.cuda.set_device(where)
        dist.init_process_group("nccl" if where.type == "cuda" else "gloo", rank=rank, world_size=size)
    return World(rank, size, where)


def leave() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port free on ``host`` now (the rendezvous of processes on one host)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _run_rank(rank: int, size: int, port: int, target: Callable[..., Any], args: tuple[Any, ...]) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(size), MASTER_ADDR=LOOPBACK, MASTER_PORT=str(port)
    )
    target(*args)
    exit_now(0)  # an exception instead goes to the launcher, which reports it


def exit_now(code: int) -> NoReturn:
    """End this training process at once, once what it printed is out, without tearing the interpreter down.

    A model trained behind ``DistributedDataParallel`` keeps its process group alive past
    ``leave()``: gloo's worker threads (and, in the process that started the group, its
    TCPStore's) still run when the process exits, and are destroyed while the interpreter is
    torn down, when a thread of theirs may need the GIL; the process then aborts ("terminate
    called without an active exception", SIGABRT) after its work is done. A training process
    holds nothing that its teardown would save: its files are written and closed, its logs
    flushed at each line.
    """
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    logging.shutdown()
    os._exit(code)


def spawn(nproc: int, target: Callable[..., Any], *args: Any) -> None:
    """Run ``target(*args)`` in ``nproc`` processes on this host, each told its rank as ``torchrun`` would.

    Returns when all have finished; an exception in any is raised here.
    """
    if nproc < 1:
        raise ConfigError(f"nproc must be a positive integer, got {nproc!r}")
    mp.spawn(_run_rank, args=(nproc, free_port(), target, args), nprocs=nproc, join=True)
