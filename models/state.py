"""``StreamState``: what a forecaster carries from one call to the next.

It holds the causal conv's last ``kernel - 1`` inputs, the recurrent hidden
state (``(h, c)`` for an LSTM) and, for a volatility-scaled model, the EWMA
variance of each stream's returns and its weight (``models/volatility.py``),
for a batch of B independent streams. It
serialises to compact bytes (float32) behind a versioned header that records
the architecture, so that a state is never fed to a model it does not fit.

Packed, a state is a (B, P) float32 array whose row b holds stream b's values
in the order of its bytes; the numpy step kernel (``models/kernel.py``) reads
and writes that form, and the state read from bytes keeps it.

Format 2 (written before the variance carried its weight) is still read: its
streams get the steady weight 1 / (1 - decay), under which the recursion is
the plain EWMA that wrote them, so a stored session goes on as it would have.
Such a state is written back in format 3.

A model with variance scales (``ModelConfig.variance_scales``) writes format
4: its conv inputs hold one more column per scale (``conv_inputs``), and after
the hidden state each stream holds the (variance, weight) pair of the main
variance, then one per scale. Models without scales write format 3 as before.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

import numpy as np
import torch
from torch import Tensor

from latentcast.errors import StateError
from models.config import CELLS, ModelConfig
from models.volatility import steady_weight

MAGIC = b"LCSS"
FORMAT_VERSION = 1  # conv and hidden: the states of globally scaled models, as ever written
UNWEIGHTED_FORMAT_VERSION = 2  # the same, then one float per stream: its EWMA variance
VOLATILITY_FORMAT_VERSION = 3  # the same, then two floats per stream: its EWMA variance and that variance's weight
SCALES_FORMAT_VERSION = 4  # the same, then a (variance, weight) pair per variance scale (conv inputs one more each)
_VERSIONS = (FORMAT_VERSION, UNWEIGHTED_FORMAT_VERSION, VOLATILITY_FORMAT_VERSION, SCALES_FORMAT_VERSION)
# magic, version, cell, n_features, conv_kernel, hidden_size, num_layers, batch
_HEADER = struct.Struct("<4sBBHHIHI")
_BATCH = struct.Struct("<I")  # the header's last field
HEADER_BYTES = _HEADER.size

Hidden = Tensor | tuple[Tensor, Tensor]


class StreamState:
    """Carried state of B streams.

    conv:     (B, F', kernel - 1) last inputs of the causal conv, oldest first (F' = ``conv_inputs``)
    hidden:   (num_layers, B, hidden_size), or a pair of them for an LSTM
    volatility: (B, 2 + 2S) the EWMA variance of the returns read so far, in
              units of the training variance, and its weight, then those
              of each of S variance scales (volatility scaling only, else
              None)

    A state built from a packed array (``from_packed``, ``from_bytes``) keeps
    it, and makes conv and hidden, views of it, only when they are read: a
    live session reads its state from bytes, steps it with the numpy kernel
    and writes it back, and never needs the tensors. A state is never changed
    in place, so the packed array stays its values.
    """

    __slots__ = ("_conv", "_hidden", "_layout", "_packed", "_volatility")

    def __init__(self, conv: Tensor, hidden: Hidden, volatility: Tensor | None = None) -> None:
        self._conv: Tensor | None = conv
        self._hidden: Hidden | None = hidden
        self._volatility = volatility
        self._packed: np.ndarray | None = None
        self._layout: _Layout | None = None

    @classmethod
    def from_packed(cls, values: np.ndarray, config: ModelConfig) -> StreamState:
        """The state of B streams whose values are the rows of ``values`` (B, P) float32, not copied."""
        layout = _layout(config)
        assert values.dtype == np.float32 and values.shape[1] == layout.floats_per_stream, values.shape
        return cls._of_packed(values, layout)

    @classmethod
    def _of_packed(cls, values: np.ndarray, layout: _Layout) -> StreamState:
        state = cls.__new__(cls)
        state._conv = state._hidden = state._volatility = None
        state._packed, state._layout = values, layout
        return state

    @property
    def conv(self) -> Tensor:
        if self._conv is None:
            self._unpack()
        assert self._conv is not None
        return self._conv

    @property
    def hidden(self) -> Hidden:
        if self._hidden is None:
            self._unpack()
        assert self._hidden is not None
        return self._hidden

    @property
    def volatility(self) -> Tensor | None:
        """(B, 2 + 2S): each stream's EWMA variances and their weights, or None without volatility scaling."""
        if self._conv is None:
            self._unpack()
        return self._volatility

    def _unpack(self) -> None:
        """Make conv and hidden as views of the packed array: numpy slices, then shared with torch.

        torch views cost far more than numpy views outside inference mode.
        """
        values, layout = self._packed, self._layout
        assert values is not None and layout is not None
        batch, (f, k), (layers, size) = len(values), layout.conv, layout.hidden
        hidden = [
            torch.from_numpy(values[:, at : at + layers * size].reshape(batch, layers, size).transpose(1, 0, 2))
            for at in range(f * k, f * k + layout.hidden_tensors * layers * size, layers * size)
        ]
        self._hidden = (hidden[0], hidden[1]) if layout.hidden_tensors == 2 else hidden[0]
        self._volatility = torch.from_numpy(values[:, -layout.volatility :]) if layout.volatility else None
        self._conv = torch.from_numpy(values[:, : f * k].reshape(batch, f, k))

    @property
    def batch_size(self) -> int:
        return len(self._packed) if self._packed is not None else int(self.conv.shape[0])

    def tensors(self) -> list[Tensor]:
        hidden = list(self.hidden) if isinstance(self.hidden, tuple) else [self.hidden]
        volatility = self.volatility
        return [self.conv, *hidden] if volatility is None else [self.conv, *hidden, volatility]

    def packed(self) -> np.ndarray:
        """(B, P) float32: row b holds stream b's values in the order of its bytes."""
        if self._packed is not None:
            return self._packed
        batch = self.batch_size
        hidden = self.hidden if isinstance(self.hidden, tuple) else (self.hidden,)
        parts = [self.conv.reshape(batch, -1), *(h.transpose(0, 1).reshape(batch, -1) for h in hidden)]
        if self.volatility is not None:
            parts.append(self.volatility)
        return torch.cat(parts, dim=1).detach().to(torch.float32).numpy()

    def detach(self) -> StreamState:
        """The same values cut from the autograd graph (the TBPTT boundary)."""
        hidden = self.hidden
        detached = tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()
        volatility = None if self.volatility is None else self.volatility.detach()
        return StreamState(self.conv.detach(), detached, volatility)  # type: ignore[arg-type]

    @staticmethod
    def stack(states: Sequence[StreamState]) -> StreamState:
        """Concatenate states along the batch dimension."""
        conv = torch.cat([s.conv for s in states], dim=0)
        volatility = None if states[0].volatility is None else torch.cat([s.volatility for s in states])  # type: ignore[misc]
        first = states[0].hidden
        if isinstance(first, tuple):
            pairs = [s.hidden for s in states]
            h = torch.cat([p[0] for p in pairs], dim=1)
            c = torch.cat([p[1] for p in pairs], dim=1)
            return StreamState(conv, (h, c), volatility)
        return StreamState(conv, torch.cat([s.hidden for s in states], dim=1), volatility)  # type: ignore[misc]

    def to_bytes(self, config: ModelConfig) -> bytes:
        """Serialise: a header naming the architecture, then float32 values."""
        header = _layout(config).prefix + _BATCH.pack(self.batch_size)
        if self._packed is not None and self.batch_size == 1:  # one stream's packed row is its body
            return header + self._packed.tobytes()
        body = b"".join(t.detach().to(torch.float32).contiguous().numpy().tobytes() for t in self.tensors())
        return header + body

    @classmethod
    def from_bytes(cls, blob: bytes, config: ModelConfig, offset: int = 0) -> StreamState:
        """Rebuild a state serialised by ``to_bytes`` (from ``blob[offset:]``); ``StateError`` if it does not fit.

        A session reads its state at every request: the header is checked by one
        comparison with the header this model writes, and the values are copied
        once into one array that the tensors share.
        """
        layout = _layout(config)
        end = offset + _HEADER.size
        if not blob.startswith(layout.prefix, offset):
            unweighted = _layout(config, UNWEIGHTED_FORMAT_VERSION).prefix
            if expected_version(config) == VOLATILITY_FORMAT_VERSION and blob.startswith(unweighted, offset):
                return cls._from_unweighted(blob, config, offset)
            _refuse(blob[offset:], config)
        (batch,) = _BATCH.unpack_from(blob, end - _BATCH.size)
        if len(blob) - end != 4 * batch * layout.floats_per_stream:
            _refuse(blob[offset:], config)
        if batch == 1:  # one stream's body is its packed row
            return cls._of_packed(np.ndarray((1, layout.floats_per_stream), "<f4", blob, end).copy(), layout)
        # numpy slices cost far less than torch views outside inference mode
        values = np.frombuffer(blob, dtype="<f4", offset=end).copy()
        tensors, at = [], 0
        for shape in layout.shapes(batch):
            size = math.prod(shape)
            tensors.append(torch.from_numpy(values[at : at + size].reshape(shape)))
            at += size
        volatility = tensors.pop() if layout.volatility else None
        if config.cell == "LSTM":
            return cls(tensors[0], (tensors[1], tensors[2]), volatility)
        return cls(tensors[0], tensors[1], volatility)

    @classmethod
    def _from_unweighted(cls, blob: bytes, config: ModelConfig, offset: int) -> StreamState:
        """A format-2 state (its variance without a weight), each stream given the steady weight (module doc)."""
        old = _layout(config, UNWEIGHTED_FORMAT_VERSION)
        end = offset + _HEADER.size
        (batch,) = _BATCH.unpack_from(blob, end - _BATCH.size)
        expected = _HEADER.size + 4 * batch * old.floats_per_stream
        if len(blob) - offset != expected:
            raise StateError(f"stream state has {len(blob) - offset} bytes, expected {expected}")
        values = np.empty((batch, old.floats_per_stream + 1), np.float32)
        body = np.frombuffer(blob, "<f4", batch * old.floats_per_stream, end)
        if batch == 1:
            values[:, :-1] = body
        else:  # the old bytes hold each tensor whole: read them as such, then pack them in rows
            tensors, at = [], 0
            for shape in old.shapes(batch):
                size = math.prod(shape)
                tensors.append(torch.from_numpy(body[at : at + size].reshape(shape).copy()))
                at += size
            hidden = (tensors[1], tensors[2]) if config.cell == "LSTM" else tensors[1]
            values[:, :-1] = cls(tensors[0], hidden, tensors[-1]).packed()
        values[:, -1] = steady_weight(config)
        return cls._of_packed(values, _layout(config))


@dataclass(frozen=True)
class _Layout:
    """What the bytes of one model's states look like."""

    prefix: bytes  # the header up to the batch size
    conv: tuple[int, int]  # (F, kernel - 1) per stream
    hidden: tuple[int, int]  # (num_layers, hidden_size)
    hidden_tensors: int  # 2 for an LSTM's (h, c)
    volatility: int  # floats per stream after the hidden state: the variance, from format 3 its weight, from 4 more
    floats_per_stream: int  # P, read at every state read and write: a field, not a property

    def shapes(self, batch: int) -> list[tuple[int, ...]]:
        layers, size = self.hidden
        shapes: list[tuple[int, ...]] = [(batch, *self.conv)]
        shapes += [(layers, batch, size)] * self.hidden_tensors
        return [*shapes, (batch, self.volatility)] if self.volatility else shapes


@functools.cache
def _layout(config: ModelConfig, version: int | None = None) -> _Layout:
    """The layout ``config``'s model writes, or that of an older ``version`` of its format."""
    version = version or expected_version(config)
    volatility = {FORMAT_VERSION: 0, UNWEIGHTED_FORMAT_VERSION: 1, VOLATILITY_FORMAT_VERSION: 2}.get(version)
    if volatility is None:
        volatility = 2 + 2 * len(config.variance_scales)
    header = _HEADER.pack(
        MAGIC,
        version,
        CELLS.index(config.cell),
        config.n_features,
        config.conv_kernel,
        config.hidden_size,
        config.num_layers,
        0,
    )
    hidden_tensors = 2 if config.cell == "LSTM" else 1
    return _Layout(
        prefix=header[: -_BATCH.size],
        conv=(config.conv_inputs, config.conv_kernel - 1),
        hidden=(config.num_layers, config.hidden_size),
        hidden_tensors=hidden_tensors,
        volatility=volatility,
        floats_per_stream=config.conv_inputs * (config.conv_kernel - 1)
        + hidden_tensors * config.num_layers * config.hidden_size
        + volatility,
    )


def expected_version(config: ModelConfig) -> int:
    """The state format ``config``'s model writes."""
    if config.variance_scales:
        return SCALES_FORMAT_VERSION
    return VOLATILITY_FORMAT_VERSION if config.volatility_scaled else FORMAT_VERSION


def floats_per_stream(config: ModelConfig) -> int:
    """P: the float32 values of one stream's state, packed (``StreamState.packed``)."""
    return _layout(config).floats_per_stream


def _refuse(blob: bytes, config: ModelConfig) -> NoReturn:
    """Raise the ``StateError`` that says why ``blob`` is not a state of ``config``'s model."""
    if len(blob) < _HEADER.size:
        raise StateError(f"stream state too short: {len(blob)} bytes, header needs {_HEADER.size}")
    magic, version, cell, n_features, kernel, hidden, layers, batch = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise StateError("not a stream state: bad magic bytes")
    expected = expected_version(config)
    if version not in _VERSIONS:
        raise StateError(
            f"stream state format {version} is not supported "
            f"(this build reads {', '.join(map(str, _VERSIONS[:-1]))} and {_VERSIONS[-1]})"
        )
    if (version == FORMAT_VERSION) != (expected == FORMAT_VERSION):
        carried = "does not carry" if version == FORMAT_VERSION else "carries"
        raise StateError(f"stream state {carried} a volatility estimate; the model's scaling is {config.scaling}")
    if (version == SCALES_FORMAT_VERSION) != (expected == SCALES_FORMAT_VERSION):
        carried = "carries" if version == SCALES_FORMAT_VERSION else "does not carry"
        raise StateError(
            f"stream state {carried} variances at several scales; the model's variance_scales are "
            f"{list(config.variance_scales)}"
        )
    found = {
        "cell": CELLS[cell] if cell < len(CELLS) else f"#{cell}",
        "n_features": n_features,
        "conv_kernel": kernel,
        "hidden_size": hidden,
        "num_layers": layers,
    }
    wrong = [f"{k} {v} (model has {getattr(config, k)})" for k, v in found.items() if getattr(config, k) != v]
    if wrong:
        raise StateError(f"stream state does not fit this model: {', '.join(wrong)}")
    size = _HEADER.size + 4 * batch * _layout(config).floats_per_stream
    raise StateError(f"stream state has {len(blob)} bytes, expected {size}")
