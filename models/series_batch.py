"""``SeriesBatch``: the states of many latent streams as arrays, read from and written to their bytes at once.

A bulk request steps hundreds of live sessions of one model by one
observation each. Their states are read from bytes, stepped and written back;
as one ``SeriesState`` per stream, most of that time goes into building and
taking apart Python objects. A live latent stream's state bytes
(``series_to_bytes``) all have one length and differ only in their values, so
the states of B streams read as one (B,) record array and are written as one,
byte for byte what ``series_to_bytes`` writes for each.
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
