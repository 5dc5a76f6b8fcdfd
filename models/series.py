"""What a stream of observations is and leaves behind: observations, forecasts, ``SeriesState``.

A ``SeriesState`` serialises to compact bytes (``series_to_bytes``) that a
service keeps between a session's requests: a versioned header, the last
output, then ar mode's window or latent mode's ``StreamState`` bytes. Stored
sessions must load in later builds: the format changes only with
``SERIES_FORMAT``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from latentcast.errors import DataError, StateError
from models.config import MODES, ModelConfig
from models.state import StreamState

SERIES_MAGIC = b"LCSE"
SERIES_FORMAT = 1
# magic, version, mode, n_obs, last_close, last_volume, has_output, window rows
_SERIES_HEADER = struct.Struct("<4sBBQddBI")


OBSERVATION_VALUES = ("close", "open", "high", "low", "volume")
# A forecast price is close * exp(log return): far below float64's 1.8e308, so that it stays
# finite (and JSON can carry it), and far above any quoted price, even in a hyperinflation.
MAX_PRICE = 1e15
# Below float64's smallest normal number (2.2e-308) a price loses its precision, and its forecast
# prices (close * exp(q)) collapse to one value; a trillionth is far below any quoted price.
MIN_PRICE = 1e-12


@dataclass(frozen=True)
class Observation:
    """One bar as a client sends it; only ``close`` is always needed."""

    close: float
    open: float | None = None
    high: float | None = None
    low: float | None = None
    volume: float | None = None
    time: str | None = None


@dataclass(frozen=True)
class Forecast:
    """Quantiles of the cumulative log return (and price) for horizons 1..H."""

    as_of_seq: int
    horizons: list[int]
    quantiles: list[float]
    log_return: list[list[float]]  # [horizon][quantile]
    price: list[list[float]]  # [horizon][quantile]

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of_seq": self.as_of_seq,
            "horizons": self.horizons,
            "quantiles": self.quantiles,
            "log_return": self.log_return,
            "price": self.price,
        }


@dataclass(frozen=True)
class SeriesState:
    """Everything a stream of observations leaves behind for the next call.

    n_obs:      observations applied so far (the next one has index n_obs)
    last_close / last_volume: the last bar's values (features need the previous bar)
    output:     (H, Q) unscaled quantiles after the last observation, or None
    stream:     latent mode's model state (None before the first return)
    window:     ar mode's last scaled feature rows, (<= window, F)
    """

    n_obs: int = 0
    last_close: float | None = None
    last_volume: float | None = None
    output: np.ndarray | None = None
    stream: StreamState | None = None
    window: np.ndarray | None = None


@dataclass(frozen=True)
class StoredStep:
    """One stream's batch for ``Predictor.advance_stored``: its state as bytes and the observations it sent.

    state:        ``series_to_bytes`` of the stream; it must hold ``n_obs`` observations
    observations: the whole batch, validated whole; the first is observation ``first_seq``
    new:          how many of its last observations are new (0: validated only)
    offsets:      (H, Q) the stream's own offsets, added to the model's in its forecast, or None
    """

    state: bytes
    n_obs: int
    observations: Sequence[Observation]
    first_seq: int
    new: int
    offsets: np.ndarray | None = None

    @property
    def tail(self) -> Sequence[Observation]:
        """The new observations."""
        return self.observations[len(self.observations) - self.new :]


@dataclass(frozen=True)
class Stepped:
    """A stream after ``Predictor.advance_stored``: its state's bytes, what a reply reads of it, its forecast.

    output: (H, Q) float32 unscaled quantiles after the last observation, or None (too little history)
    """

    state: bytes
    n_obs: int
    last_close: float | None
    output: np.ndarray | None
    forecast: Forecast | None


def series_to_bytes(state: SeriesState, config: ModelConfig) -> bytes:
    """Compact bytes: a header, the output, then the stream state or window."""
    window_rows = 0 if state.window is None else len(state.window)
    header = _SERIES_HEADER.pack(
        SERIES_MAGIC,
        SERIES_FORMAT,
        MODES.index(config.mode),
        state.n_obs,
        math.nan if state.last_close is None else state.last_close,
        math.nan if state.last_volume is None else state.last_volume,
        state.output is not None,
        window_rows,
    )
    parts = [header]
    if state.output is not None:
        parts.append(state.output.astype("<f4").tobytes())
    if state.window is not None:
        parts.append(state.window.astype("<f4").tobytes())
    if state.stream is not None:
        parts.append(state.stream.to_bytes(config))
    return b"".join(parts)


def series_from_bytes(blob: bytes, config: ModelConfig) -> SeriesState:
    """Inverse of ``series_to_bytes``; ``StateError`` if the bytes do not fit ``config``'s model."""
    if len(blob) < _SERIES_HEADER.size or blob[:4] != SERIES_MAGIC:
        raise StateError("not a series state: bad or missing header")
    _magic, version, mode, n_obs, close, volume, has_output, rows = _SERIES_HEADER.unpack_from(blob)
    if version != SERIES_FORMAT:
        raise StateError(f"series state format {version} is not supported (this build reads {SERIES_FORMAT})")
    if mode >= len(MODES) or MODES[mode] != config.mode:
        raise StateError(
            f"series state is for mode {MODES[mode] if mode < len(MODES) else mode}, model is {config.mode}"
        )
    at = _SERIES_HEADER.size
    output = None
    if has_output:
        output = _floats(blob, at, (config.horizon, len(config.quantiles)))
        at += output.nbytes
    window = None
    if config.mode == "ar" and rows:
        window = _floats(blob, at, (rows, config.n_features))
        at += window.nbytes
    stream = StreamState.from_bytes(blob, config, at) if at < len(blob) else None
    last_close = None if math.isnan(close) else close
    last_volume = None if math.isnan(volume) else volume
    # positional: a session reads its state at every request, and keywords cost more (docs/performance.md)
    return SeriesState(n_obs, last_close, last_volume, output, stream, window)


def _floats(blob: bytes, offset: int, shape: tuple[int, int]) -> np.ndarray:
    """A copy of the float32 array of ``shape`` at ``offset`` in ``blob``."""
    end = offset + 4 * shape[0] * shape[1]
    if end > len(blob):
        raise StateError(f"series state truncated: needs {end} bytes, has {len(blob)}")
    return np.ndarray(shape, "<f4", blob, offset).copy()


def validate_observations(
    observations: Sequence[Observation], fields: Sequence[str], first_seq: int = 0, together: Sequence[str] = ()
) -> None:
    """Raise ``DataError`` naming the first bad observation by its seq; ``fields``: those the model needs.

    ``together``: values the model reads when sent, all of them or none (a bar's high and low).
    """
    for i, obs in enumerate(observations):
        where = f"observation {first_seq + i}"
        sent = [name for name in together if getattr(obs, name) is not None]
        if sent and len(sent) < len(together):
            lacking = next(name for name in together if name not in sent)
            raise DataError(
                f"{where}: {lacking} is missing while {', '.join(sent)} is sent; this model reads "
                f"{' and '.join(together)} together, or neither",
                seq=first_seq + i,
            )
        # every value sent is checked, also those this model does not read: the same
        # observation is then valid or not whatever the model, as the API schema says
        for name in OBSERVATION_VALUES:
            value = getattr(obs, name)
            if value is None:
                if name in fields:
                    needed = ", ".join(fields)
                    raise DataError(f"{where}: {name} is missing; this model needs {needed}", seq=first_seq + i)
                continue
            if not math.isfinite(value):
                raise DataError(f"{where}: {name} is {value}; values must be finite", seq=first_seq + i)
            if value < 0 or (value == 0 and name != "volume"):
                kind = "volume must not be negative" if name == "volume" else "prices must be positive"
                raise DataError(f"{where}: {name} is {value}; {kind}", seq=first_seq + i)
            if name != "volume" and not MIN_PRICE <= value <= MAX_PRICE:
                bound = f"at most {MAX_PRICE:g}" if value > MAX_PRICE else f"at least {MIN_PRICE:g}"
                raise DataError(f"{where}: {name} is {value}; prices must be {bound}", seq=first_seq + i)
        if obs.high is not None and obs.low is not None and obs.high < obs.low:
            raise DataError(f"{where}: high {obs.high} is below low {obs.low}", seq=first_seq + i)
        for name in ("open", "close"):
            value = getattr(obs, name)
            if value is None:
                continue
            if obs.low is not None and value < obs.low:
                raise DataError(f"{where}: {name} {value} is below low {obs.low}", seq=first_seq + i)
            if obs.high is not None and value > obs.high:
                raise DataError(f"{where}: {name} {value} is above high {obs.high}", seq=first_seq + i)
