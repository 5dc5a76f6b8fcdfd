"""``SeriesBatch``: the states of many latent streams as arrays, read from and written to their bytes at once.

A bulk request steps hundreds of live sessions of one model by one
observation each. Their states are read from bytes, stepped and written back;
as one ``SeriesState`` per stream, most of that time goes into building and
taking apart Python objects. A live latent stream's state bytes
(``series_to_bytes``) all have one length and differ only in their values, so
the states of B streams read as one (B,) record array and are written as one,
byte for byte what ``series_to_bytes`` writes for each. A lone stream (one
append, the commonest request) is read and written by slices of its bytes,
without the record array's fixed costs: the same arrays and bytes.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.config import ModelConfig
from models.series import SeriesState, series_to_bytes
from models.state import HEADER_BYTES, StreamState, floats_per_stream

# the bytes every live stream's state of one model shares: the series header's magic, format and
# mode; its output flag and (zero) window rows; the stream state's header
_FIXED = ("head", "flags", "stream_head")


@dataclass(frozen=True)
class SeriesBatch:
    """B latent streams that have a forecast, as arrays.

    n_obs:       (B,) int64 observations applied so far
    last_close:  (B,) float64
    last_volume: (B,) float64, NaN where the last bar carried none
    output:      (B, H, Q) float32 unscaled quantiles after the last observation
    packed:      (B, P) float32 the streams' model states (``StreamState.packed``)
    """

    n_obs: np.ndarray
    last_close: np.ndarray
    last_volume: np.ndarray
    output: np.ndarray
    packed: np.ndarray

    def __len__(self) -> int:
        return len(self.n_obs)

    def take(self, keep: np.ndarray) -> SeriesBatch:
        """The streams where ``keep`` (B,) bool is true."""
        return SeriesBatch(
            self.n_obs[keep], self.last_close[keep], self.last_volume[keep], self.output[keep], self.packed[keep]
        )

    def state(self, i: int, config: ModelConfig) -> SeriesState:
        """Stream ``i`` as the ``SeriesState`` that ``series_from_bytes`` reads from its bytes."""
        volume = float(self.last_volume[i])
        return SeriesState(
            int(self.n_obs[i]),
            float(self.last_close[i]),
            None if math.isnan(volume) else volume,
            self.output[i],
            StreamState.from_packed(self.packed[i : i + 1], config),
        )


def batch_from_bytes(blobs: Sequence[bytes], config: ModelConfig) -> tuple[SeriesBatch, list[int]]:
    """The states among ``blobs`` that are live streams of ``config``'s latent model (a last close, a
    forecast and a model state), read together, and their indices in ``blobs``.

    Each is read as ``series_from_bytes`` reads it; the others (any other kind of state, or bytes
    that are not a state of this model) are left out, for ``series_from_bytes`` to read or refuse.
    """
    if len(blobs) == 1:  # a lone append, the commonest call: read without the record array's fixed costs
        lone = _lone_from_bytes(blobs[0], _lone_layout(config))
        if lone is not None:
            return lone, [0]
    return _records_from_bytes(blobs, config)


def _records_from_bytes(blobs: Sequence[bytes], config: ModelConfig) -> tuple[SeriesBatch, list[int]]:
    """``batch_from_bytes`` for any number of states, through one record array."""
    dtype, at, shared = _shared_bytes(config)
    sized = [i for i, blob in enumerate(blobs) if len(blob) == dtype.itemsize]
    joined = b"".join([blobs[i] for i in sized])
    records = np.frombuffer(joined, dtype)
    # the shared bytes of all the fixed fields compared at once: a few calls whatever the number of streams
    fits = (np.frombuffer(joined, np.uint8).reshape(len(sized), dtype.itemsize)[:, at] == shared).all(axis=1)
    last_close = records["last_close"]
    fits &= last_close == last_close  # not NaN
    if not fits.all():
        records = records[fits]
        sized = [i for i, fit in zip(sized, fits.tolist(), strict=True) if fit]
    batch = SeriesBatch(
        records["n_obs"].astype(np.int64),
        records["last_close"].copy(),
        records["last_volume"].copy(),
        records["output"].copy(),
        records["packed"].copy(),
    )
    return batch, sized


def batch_to_bytes(batch: SeriesBatch, config: ModelConfig) -> list[bytes]:
    """Each stream's state bytes, as ``series_to_bytes`` writes them."""
    if len(batch) == 1:  # arrays of other dtypes or shapes are cast or refused by the record array
        lone = _lone_layout(config)
        if [(a.dtype, a.shape) for a in _arrays(batch)] == lone.arrays:
            return [_lone_to_bytes(batch, lone)]
    return _records_to_bytes(batch, config)


def _records_to_bytes(batch: SeriesBatch, config: ModelConfig) -> list[bytes]:
    """``batch_to_bytes`` for any number of streams, through one record array."""
    dtype, template = _layout(config)
    records = np.empty(len(batch), dtype)
    for name in _FIXED:
        records[name] = template[name]
    records["n_obs"] = batch.n_obs
    records["last_close"] = batch.last_close
    records["last_volume"] = batch.last_volume
    records["output"] = batch.output
    records["packed"] = batch.packed
    blob, size = records.tobytes(), dtype.itemsize
    return [blob[at : at + size] for at in range(0, len(blob), size)]


@functools.cache
def _shared_bytes(config: ModelConfig) -> tuple[np.dtype, np.ndarray, np.ndarray]:
    """The record of one live stream's state bytes (``_layout``), where its ``_FIXED`` fields lie (byte
    offsets), and what they hold: one lookup per call of ``batch_from_bytes`` or ``batch_to_bytes``."""
    dtype, template = _layout(config)
    fields = dtype.fields
    assert fields is not None
    at = np.concatenate([np.arange(fields[name][1], fields[name][1] + fields[name][0].itemsize) for name in _FIXED])
    return dtype, at, np.frombuffer(template.tobytes(), np.uint8)[at]


@functools.cache
def _layout(config: ModelConfig) -> tuple[np.dtype, np.void]:
    """The record of one live stream's state bytes, and a record holding the bytes they all share.

    The fields follow ``series_to_bytes``: its header, the output, then the stream state's header
    and values; a state it writes is read back here, so that the two stay one format.
    """
    shape, floats = (config.horizon, len(config.quantiles)), floats_per_stream(config)
    fields: dict[str, tuple[str, tuple[int, ...]]] = {
        "head": ("u1", (struct.calcsize("<4sBB"),)),  # magic, format, mode
        "n_obs": ("<u8", ()),
        "last_close": ("<f8", ()),
        "last_volume": ("<f8", ()),
        "flags": ("u1", (struct.calcsize("<BI"),)),  # has an output, window rows (none)
        "output": ("<f4", shape),
        "stream_head": ("u1", (HEADER_BYTES,)),
        "packed": ("<f4", (floats,)),
    }
    offsets, at = [], 0
    for kind, size in fields.values():
        offsets.append(at)
        at += np.dtype(kind).itemsize * math.prod(size)
    dtype = np.dtype(
        {
            "names": list(fields),
            "formats": [(kind, size) if size else kind for kind, size in fields.values()],
            "offsets": offsets,
            "itemsize": at,
        }
    )
    stream = StreamState.from_packed(np.zeros((1, floats), np.float32), config)
    blob = series_to_bytes(SeriesState(1, 1.0, None, np.zeros(shape, np.float32), stream), config)
    assert len(blob) == dtype.itemsize, (len(blob), dtype.itemsize)
    return dtype, np.frombuffer(blob, dtype)[0]


# n_obs (signed: the unsigned field as ``astype(np.int64)`` reads it), last_close, last_volume
_NUMBERS = struct.Struct("<qdd")
# the dtypes the record array's fields are read as (little-endian, as the bytes are)
_INT, _FLOAT, _FLOAT32 = np.dtype("<i8"), np.dtype("<f8"), np.dtype("<f4")
_ORDER = ("head", "n_obs", "last_close", "last_volume", "flags", "output", "stream_head", "packed")


@dataclass(frozen=True)
class _Lone:
    """Where one live stream's state bytes hold each field (``_layout``), to read or write one stream
    without a record array: numpy's fixed cost per call outweighs a lone stream's work."""

    size: int  # the state's length in bytes
    fixed: tuple[tuple[int, int, bytes], ...]  # each ``_FIXED`` field's start, end and shared bytes
    numbers: int  # where n_obs, last_close and last_volume start (``_NUMBERS``)
    output: tuple[int, int, tuple[int, ...]]  # where it starts, its floats, its shape in a batch (1, H, Q)
    packed: tuple[int, int, tuple[int, ...]]  # the same for the model state, (1, P)
    arrays: list[tuple[np.dtype, tuple[int, ...]]]  # dtype and shape of each ``_arrays`` of a batch of one


def _arrays(batch: SeriesBatch) -> tuple[np.ndarray, ...]:
    """The batch's arrays in the order of their fields in the bytes."""
    return batch.n_obs, batch.last_close, batch.last_volume, batch.output, batch.packed


@functools.cache
def _lone_layout(config: ModelConfig) -> _Lone:
    dtype, template = _layout(config)
    fields, shared = dtype.fields, template.tobytes()
    assert fields is not None and dtype.names == _ORDER, dtype.names  # the order ``_lone_to_bytes`` writes

    def span(name: str) -> tuple[int, int]:
        return fields[name][1], fields[name][1] + fields[name][0].itemsize

    fixed = tuple((start, end, shared[start:end]) for start, end in map(span, _FIXED))
    assert span("n_obs")[0] + _NUMBERS.size == span("last_volume")[1]
    (output, at), (packed, packed_at) = fields["output"][:2], fields["packed"][:2]
    shapes = [(1,), (1,), (1,), (1, *output.shape), (1, *packed.shape)]
    kinds: list[np.dtype] = [_INT, _FLOAT, _FLOAT, _FLOAT32, _FLOAT32]
    return _Lone(
        dtype.itemsize,
        fixed,
        span("n_obs")[0],
        (at, math.prod(output.shape), shapes[3]),
        (packed_at, math.prod(packed.shape), shapes[4]),
        list(zip(kinds, shapes, strict=True)),
    )


def _lone_from_bytes(blob: bytes, lone: _Lone) -> SeriesBatch | None:
    """``blob`` as the batch of one that ``batch_from_bytes`` reads from it, or None where it reads none
    (left to the record array, which leaves it out)."""
    (_, head_end, head), (flags_at, flags_end, flags), (stream_at, stream_end, stream_head) = lone.fixed
    if (
        len(blob) != lone.size
        or blob[:head_end] != head  # the bytes start with it (``_ORDER``)
        or blob[flags_at:flags_end] != flags
        or blob[stream_at:stream_end] != stream_head
    ):
        return None
    n_obs, last_close, last_volume = _NUMBERS.unpack_from(blob, lone.numbers)
    if last_close != last_close:  # NaN
        return None
    raw = bytearray(blob)  # writable arrays, as the record array's copies are
    (at, count, shape), (packed_at, floats, packed_shape) = lone.output, lone.packed
    return SeriesBatch(
        np.array([n_obs], np.int64),  # as ``astype(np.int64)`` gives it
        np.array([last_close], _FLOAT),
        np.array([last_volume], _FLOAT),
        np.frombuffer(raw, _FLOAT32, count, at).reshape(shape),
        np.frombuffer(raw, _FLOAT32, floats, packed_at).reshape(packed_shape),
    )


def _lone_to_bytes(batch: SeriesBatch, lone: _Lone) -> bytes:
    """The state bytes of ``batch``'s one stream, its arrays of ``lone.arrays``' dtypes and shapes."""
    (_, _, head), (_, _, flags), (_, _, stream_head) = lone.fixed
    return b"".join(
        (
            head,
            batch.n_obs.tobytes(),  # int64's bytes are those of the unsigned field it is written to
            batch.last_close.tobytes(),
            batch.last_volume.tobytes(),
            flags,
            batch.output.tobytes(),
            stream_head,
            batch.packed.tobytes(),
        )
    )
