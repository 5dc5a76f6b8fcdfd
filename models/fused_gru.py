"""Training's and evaluation's GRU on the CPU: each step's gate arithmetic one vectorised loop, in C++.

torch runs a GRU on the CPU as a dozen small ops a time step, each recorded by
autograd and replayed backward (an LSTM goes through oneDNN's fused kernel
instead). At the sizes trained here, dispatch costs more than arithmetic
(docs/universe.md). This layer keeps ``nn.GRU``'s parameters and math (gates
r, u, n in PyTorch's order) and runs each step as one matrix product and one
loop over the batch's gate values (``fused_gru.cpp``), forward and backward;
the input side and the weights' gradients are products over all steps at once.
Inside ``evaluation()`` (training's validation, scoring, comparisons), a
forward without gradients runs it too, keeping nothing for a backward pass.

The C++ is compiled once per machine by ``torch.utils.cpp_extension`` on first
use, into torch's extension cache (``python -m models.fused_gru`` does it
ahead, as ``make`` does), in a folder named by what it is built from: every
checkout of the same source loads the same build. It is built for the widest
vectors torch uses on this CPU, AVX-512 or AVX2. Where it cannot be (no C++
compiler, a CPU without AVX2), ``available()`` is False and the forecaster
runs ``nn.GRU``, as it also does for float64, CUDA, or a forward without
gradients outside ``evaluation()`` (serving). It is a second copy of the
GRU's math, so ``tests/models/test_fused_gru.py`` holds its outputs and
gradients to ``nn.GRU``'s.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import ninja
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("fused_gru.cpp")
# by torch's name for this CPU's widest vectors (``torch.backends.cpu.get_cpu_capability()``): ATen's
# Vectorized<float> holds 8 floats with AVX2, 16 with AVX-512, and the loop over the gates goes as wide
FLAGS = {
    "AVX2": ["-O3", "-mavx2", "-mfma", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"],
    "AVX512": [
        "-O3",
        *("-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma"),
        *("-DCPU_CAPABILITY=AVX512", "-DCPU_CAPABILITY_AVX512"),
    ],
}
DISABLE = "LATENTCAST_FUSED_GRU"  # set to 0 to train with nn.GRU
POOLED = 4  # shapes of batch whose buffers are kept for reuse
INFER_STEPS = 256  # steps whose input products a forward without gradients computes at once
_EVALUATING = threading.local()  # .on: inside ``evaluation()`` on this thread


@functools.cache
def _extension() -> ModuleType | None:
    """The compiled kernel, built on first use; None (logged once) where it cannot be."""
    if os.environ.get(DISABLE, "1") == "0":
        return None
    flags = FLAGS.get(torch.backends.cpu.get_cpu_capability())
    if flags is None:
        logger.warning("training runs nn.GRU: this CPU lacks AVX2, which the fused GRU is built for")
        return None
    # every process builds with the pinned ninja, whatever its PATH: a ninja of another version (a system one)
    # hashes the same commands differently and compiles the whole kernel again, in the middle of a training
    os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, os.environ.get("PATH", "")])
    if shutil.which("ninja") is None or shutil.which("c++") is None:
        logger.warning("training runs nn.GRU: the fused GRU needs ninja and a C++ compiler to build")
        return None
    from torch.utils import cpp_extension

    try:
        name, source = _build_source(Path(cpp_extension.get_default_build_root()), flags)
        return cpp_extension.load(
            name, [str(source)], extra_cflags=flags, build_directory=str(source.parent), verbose=False
        )
    except (RuntimeError, OSError, ImportError) as exc:  # a failed compile or link
        logger.warning("training runs nn.GRU: the fused GRU did not build (%s)", str(exc).splitlines()[0])
        return None


def extension_name(flags: list[str]) -> str:
    """The name of the build of ``SOURCE`` with ``flags`` against this torch: a digest of all it is built from.

    torch's folder is in it as well as its version: the build commands name
    torch's headers by their path, so a second environment (another checkout's
    virtualenv) would otherwise compile the kernel again over this one's build.
    """
    torch_dir = str(Path(torch.__file__).resolve().parent)
    parts = [SOURCE.read_bytes(), " ".join(flags).encode(), torch.__version__.encode(), torch_dir.encode()]
    key = b"\0".join([*parts, sys.version.encode()])
    return f"latentcast_fused_gru_{hashlib.sha256(key).hexdigest()[:16]}"


def _build_source(root: Path, flags: list[str]) -> tuple[str, Path]:
    """The extension's name and its source's copy in a build folder of ``root`` named by what it is built from.

    torch's build file names the source by its path: built in one shared folder,
    two checkouts of the project on one machine would each compile the kernel
    again over the other's build. Named by a digest of the source, the flags,
    torch's folder and version and Python's version instead, the folder holds
    one build that every checkout of that source loads with that torch, and a
    changed source builds beside it.
    """
    name = extension_name(flags)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / SOURCE.name
    if not source.exists():
        # written whole, then linked in only if absent: a copy already there keeps its time, so ninja keeps its build
        with tempfile.NamedTemporaryFile(dir=folder, suffix=".part", delete=False) as part:
            part.write(SOURCE.read_bytes())
        try:
            os.link(part.name, source)
        except FileExistsError:
            pass
        finally:
            os.unlink(part.name)
    return name, source


def available() -> bool:
    """Whether the fused kernel is built and loads here (it is built the first time this is asked)."""
    return _extension() is not None


@contextlib.contextmanager
def evaluation() -> Iterator[None]:
    """Inside, forwards without gradients run the fused GRU too: training's validation, scoring and comparisons.

    Outside, a forward without gradients runs ``nn.GRU``: a serving process
    never loads the kernel (nor builds it, where nothing has).
    """
    before = getattr(_EVALUATING, "on", False)
    _EVALUATING.on = True
    try:
        yield
    finally:
        _EVALUATING.on = before


def applies(rnn: nn.Module, x: Tensor) -> bool:
    """Whether ``gru(rnn, x, ...)`` is used for ``rnn(x, ...)``: a CPU float32 GRU, with gradients or evaluating."""
    return (
        isinstance(rnn, nn.GRU)
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and (torch.is_grad_enabled() or getattr(_EVALUATING, "on", False))
        and available()
    )


def gru(rnn: nn.Module, x: Tensor, hidden: Tensor | tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """``rnn(x, hidden)`` for a batch-first ``nn.GRU``: x (B, T, In), hidden (L, B, Hd) -> (y (B, T, Hd), (L, B, Hd)).

    Between layers, ``rnn.dropout`` in training mode, as ``nn.GRU`` applies it.
    """
    assert isinstance(rnn, nn.GRU) and isinstance(hidden, Tensor), "a GRU's hidden state is one tensor"
    assert rnn.batch_first and not rnn.bidirectional and rnn.bias, "a batch-first, one-way GRU with biases"
    finals = []
    for layer in range(rnn.num_layers):
        if layer:
            x = F.dropout(x, rnn.dropout, rnn.training)
        weights = [getattr(rnn, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        x, last = (
            _Layer.apply(x, hidden[layer], *weights) if torch.is_grad_enabled() else _infer(x, hidden[layer], *weights)
        )
        finals.append(last)
    return x, torch.stack(finals)


def _step_weights(w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """What the kernel's steps read: the input products' bias (3 Hd), W_hh transposed (Hd, 3 Hd), b_hh's n part.

    The bias is b_ih with b_hh's r and u parts added; n's hidden bias sits inside r * (...).
    """
    hd = w_hh.shape[1]
    bias = torch.cat([b_ih[: 2 * hd] + b_hh[: 2 * hd], b_ih[2 * hd :]])
    return bias, w_hh.t().contiguous(), b_hh[2 * hd :].contiguous()


def _infer(x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor) -> tuple[Tensor, Tensor]:
    """One layer without gradients: (y (B, T, Hd), h_T (B, Hd)), keeping nothing for a backward pass.

    The input products are computed ``INFER_STEPS`` steps at a time, so that
    evaluating a whole history (thousands of steps) holds no more than that
    many steps of them.
    """
    extension = _extension()
    assert extension is not None
    batch, steps, inputs = x.shape
    hd = h0.shape[-1]
    bias, w_hh_t, b_hn = _step_weights(w_hh, b_ih, b_hh)
    hs = torch.empty(steps + 1, batch, hd)  # time-major: the states of a span of steps are one contiguous block
    hs[0].copy_(h0)
    gh = torch.empty(batch, 3 * hd)
    for first in range(0, steps, INFER_STEPS):
        stop = min(first + INFER_STEPS, steps)
        xt = x[:, first:stop].transpose(0, 1).reshape((stop - first) * batch, inputs)
        gi = torch.addmm(bias, xt, w_ih.t()).view(stop - first, batch, 3 * hd)
        extension.infer(gi, w_hh_t, b_hn, hs[first : stop + 1], gh)
    return hs[1:].transpose(0, 1).contiguous(), hs[-1].clone()


class _Buffers:
    """What one forward pass writes and its backward pass reads, kept for the next batch of the same shape.

    Large buffers allocated afresh at every step cost a page fault for every page first written;
    reused, they cost nothing.
    """

    def __init__(self, steps: int, batch: int, hidden: int) -> None:
        self.key = (steps, batch, hidden)
        gates = 3 * hidden
        self.gi = torch.empty(steps * batch, gates)
        self.hs = torch.empty(steps + 1, batch, hidden)
        self.r, self.u, self.n, self.ghn = (torch.empty(steps, batch, hidden) for _ in range(4))
        self.gh = torch.empty(batch, gates)
        self.dgi, self.dgh = torch.empty(steps, batch, gates), torch.empty(steps, batch, gates)
        self.carried = torch.empty(batch, hidden)
        self.db, self.step_sum = torch.empty(gates + hidden, dtype=torch.float64), torch.empty(gates + hidden)

    @staticmethod
    def take(steps: int, batch: int, hidden: int) -> _Buffers:
        with _POOL_LOCK:
            free = _POOL.get((steps, batch, hidden))
            if free:
                return free.pop()
        return _Buffers(steps, batch, hidden)

    def give_back(self) -> None:
        with _POOL_LOCK:
            if self.key not in _POOL and len(_POOL) >= POOLED:
                _POOL.pop(next(iter(_POOL)))  # the shape seen longest ago
            _POOL.setdefault(self.key, []).append(self)


_POOL: dict[tuple[int, int, int], list[_Buffers]] = {}  # by (T, B, Hd): buffers no pass is using
_POOL_LOCK = threading.Lock()


class _Layer(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: FunctionCtx, x: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor
    ) -> tuple[Tensor, Tensor]:
        extension = _extension()
        assert extension is not None
        batch, steps, inputs = x.shape
        hd = h0.shape[-1]
        buffers = _Buffers.take(steps, batch, hd)
        xt = x.transpose(0, 1).reshape(steps * batch, inputs)  # (T*B, In), step-major
        bias, w_hh_t, b_hn = _step_weights(w_hh, b_ih, b_hh)
        gi = torch.addmm(bias, xt, w_ih.t(), out=buffers.gi).view(steps, batch, 3 * hd)
        buffers.hs[0].copy_(h0)
        hs, r, u, n, ghn = buffers.hs, buffers.r, buffers.u, buffers.n, buffers.ghn
        extension.forward(gi, w_hh_t, b_hn, hs, r, u, n, ghn, buffers.gh)
        ctx.buffers = buffers  # type: ignore[attr-defined]
        ctx.save_for_backward(xt, w_ih, w_hh)
        return hs[1:].transpose(0, 1).contiguous(), hs[-1].clone()  # copies: the buffers go back to the pool

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor, dh_last: Tensor) -> tuple[Tensor, ...]:
        extension = _extension()
        assert extension is not None
        xt, w_ih, w_hh = ctx.saved_tensors
        buffers: _Buffers = ctx.buffers
        del ctx.buffers
        hs, n, dgi, dgh = buffers.hs, buffers.n, buffers.dgi, buffers.dgh
        steps, batch, hd = n.shape
        dh = dh_last.contiguous().clone()
        extension.backward(
            dy.contiguous(),
            dh,
            w_hh.contiguous(),
            hs,
            buffers.r,
            buffers.u,
            n,
            buffers.ghn,
            dgi,
            dgh,
            buffers.carried,
            buffers.db,
            buffers.step_sum,
        )
        dgi_, dgh_ = dgi.view(steps * batch, 3 * hd), dgh.view(steps * batch, 3 * hd)
        db_ih = buffers.db[: 3 * hd].float()  # new tensors: the buffers go back to the pool
        grads = (
            (dgi_ @ w_ih).view(steps, batch, -1).transpose(0, 1),
            dh,
            dgi_.t() @ xt,
            dgh_.t() @ hs[:-1].reshape(steps * batch, hd),
            db_ih,
            torch.cat([db_ih[: 2 * hd], buffers.db[3 * hd :].float()]),
        )
        buffers.give_back()
        return grads


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logger.info("fused GRU built and loaded" if available() else "fused GRU unavailable: training runs nn.GRU")
