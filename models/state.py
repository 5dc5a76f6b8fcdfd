"""``StreamState``: what a forecaster carries from one call to the next.

It holds the causal conv's last ``kernel - 1`` inputs, the recurrent hidden
state (``(h, c)`` for an LSTM) and, for a volatility-scaled model, the EWMA
variance of each stream's returns, for a batch of B independent streams. It
serialises to compact bytes (float32) behind a versioned header that records
the architecture, so that a state is never fed to a model it does not fit.

Packed, a state is a (B, P) float32 array whose row b holds stream b's values
in the order of its bytes; the numpy step kernel (``models/kernel.py``) reads
and writes that form, and the state read from bytes keeps it.
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

from data.errors import StateError
from models.config import CELLS, ModelConfig

MAGIC = b"LCSS"
FORMAT_VERSION = 1  # conv and hidden: the states of globally scaled models, as ever written
VOLATILITY_FORMAT_VERSION = 2  # the same, then one float per stream: its EWMA variance
# magic, version, cell, n_features, conv_kernel, hidden_size, num_layers, batch
_HEADER = struct.Struct("<4sBBHHIHI")
_BATCH = struct.Struct("<I")  # the header's last field
HEADER_BYTES = _HEADER.size

Hidden = Tensor | tuple[Tensor, Tensor]


class StreamState:
    """Carried state of B streams.

    conv:     (B, F, kernel - 1) last inputs of the causal conv, oldest first
    hidden:   (num_layers, B, hidden_size), or a pair of them for an LSTM
    variance: (B, 1) EWMA variance of the returns read so far (volatility
              scaling only, else None), in units of the training variance

    A state built from a packed array (``from_packed``, ``from_bytes``) keeps
    it, and makes conv and hidden, views of it, only when they are read: a
    live session reads its state from bytes, steps it with the numpy kernel
    and writes it back, and never needs the tensors. A state is never changed
    in place, so the packed array stays its values.
    """

    __slots__ = ("_conv", "_hidden", "_layout", "_packed", "_variance")

    def __init__(self, conv: Tensor, hidden: Hidden, variance: Tensor | None = None) -> None:
        self._conv: Tensor | None = conv
        self._hidden: Hidden | None = hidden
        self._variance = variance
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
        state._conv = state._hidden = state._variance = None
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
    def variance(self) -> Tensor | None:
        if self._conv is None:
            self._unpack()
        return self._variance

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
        self._variance = torch.from_numpy(values[:, -1:]) if layout.variance else None
        self._conv = torch.from_numpy(values[:, : f * k].reshape(batch, f, k))

    @property
    def batch_size(self) -> int:
        return len(self._packed) if self._packed is not None else int(self.conv.shape[0])

    def tensors(self) -> list[Tensor]:
        hidden = list(self.hidden) if isinstance(self.hidden, tuple) else [self.hidden]
        variance = self.variance
        return [self.conv, *hidden] if variance is None else [self.conv, *hidden, variance]

    def packed(self) -> np.ndarray:
        """(B, P) float32: row b holds stream b's values in the order of its bytes."""
        if self._packed is not None:
            return self._packed
        batch = self.batch_size
        hidden = self.hidden if isinstance(self.hidden, tuple) else (self.hidden,)
        parts = [self.conv.reshape(batch, -1), *(h.transpose(0, 1).reshape(batch, -1) for h in hidden)]
        if self.variance is not None:
            parts.append(self.variance)
        return torch.cat(parts, dim=1).detach().to(torch.float32).numpy()

    def detach(self) -> StreamState:
        """The same values cut from the autograd graph (the TBPTT boundary)."""
        hidden = self.hidden
        detached = tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()
        variance = None if self.variance is None else self.variance.detach()
        return StreamState(self.conv.detach(), detached, variance)  # type: ignore[arg-type]

    @staticmethod
    def stack(states: Sequence[StreamState]) -> StreamState:
        """Concatenate states along the batch dimension."""
        conv = torch.cat([s.conv for s in states], dim=0)
        variance = None if states[0].variance is None else torch.cat([s.variance for s in states])  # type: ignore[misc]
        first = states[0].hidden
        if isinstance(first, tuple):
            pairs = [s.hidden for s in states]
            h = torch.cat([p[0] for p in pairs], dim=1)
            c = torch.cat([p[1] for p in pairs], dim=1)
            return StreamState(conv, (h, c), variance)
        return StreamState(conv, torch.cat([s.hidden for s in states], dim=1), variance)  # type: ignore[misc]

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
        variance = tensors.pop() if layout.variance else None
        if config.cell == "LSTM":
            return cls(tensors[0], (tensors[1], tensors[2]), variance)
        return cls(tensors[0], tensors[1], variance)


@dataclass(frozen=True)
class _Layout:
    """What the bytes of one model's states look like."""

    prefix: bytes  # the header up to the batch size
    conv: tuple[int, int]  # (F, kernel - 1) per stream
    hidden: tuple[int, int]  # (num_layers, hidden_size)
    hidden_tensors: int  # 2 for an LSTM's (h, c)
    variance: bool  # one float per stream after the hidden state (volatility scaling)
    floats_per_stream: int  # P, read at every state read and write: a field, not a property

    def shapes(self, batch: int) -> list[tuple[int, ...]]:
        layers, size = self.hidden
        shapes: list[tuple[int, ...]] = [(batch, *self.conv)]
        shapes += [(layers, batch, size)] * self.hidden_tensors
        return [*shapes, (batch, 1)] if self.variance else shapes


@functools.cache
def _layout(config: ModelConfig) -> _Layout:
    header = _HEADER.pack(
        MAGIC,
        VOLATILITY_FORMAT_VERSION if config.volatility_scaled else FORMAT_VERSION,
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
        conv=(config.n_features, config.conv_kernel - 1),
        hidden=(config.num_layers, config.hidden_size),
        hidden_tensors=hidden_tensors,
        variance=config.volatility_scaled,
        floats_per_stream=config.n_features * (config.conv_kernel - 1)
        + hidden_tensors * config.num_layers * config.hidden_size
        + int(config.volatility_scaled),
    )


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
    expected_version = VOLATILITY_FORMAT_VERSION if config.volatility_scaled else FORMAT_VERSION
    if version not in (FORMAT_VERSION, VOLATILITY_FORMAT_VERSION):
        raise StateError(
            f"stream state format {version} is not supported "
            f"(this build reads {FORMAT_VERSION} and {VOLATILITY_FORMAT_VERSION})"
        )
    if version != expected_version:
        carried = "carries" if version == VOLATILITY_FORMAT_VERSION else "does not carry"
        raise StateError(f"stream state {carried} a volatility estimate; the model's scaling is {config.scaling}")
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
    expected = _HEADER.size + 4 * batch * _layout(config).floats_per_stream
    raise StateError(f"stream state has {len(blob)} bytes, expected {expected}")
