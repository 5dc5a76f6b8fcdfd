"""Forecasting from raw observations, one batch at a time, with the state carried.

A ``Predictor`` wraps a trained forecaster and its scaler. ``advance`` takes a
``SeriesState`` and new observations (prices as they arrive) and returns the
next state; ``forecast`` reads the forecast after the last observation. The
state serialises to compact bytes, so a service can keep it between requests:

- latent mode carries the model's ``StreamState``: one new observation costs
  one step, whatever the length of the history; streams with one new row (a
  live session's request) step together through the numpy ``StepKernel``;
- ar mode carries its last ``window`` scaled feature rows and re-reads them
  from a zero state at every forecast.

Feeding observations one at a time gives the same forecasts as one call over
the whole history (to float32 rounding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from data.errors import StateError
from data.features import Scaler, bar_features, feature_rows, fields_needed
from models.calibration import YoungOffsets, apply_offsets
from models.checkpoint import build_from_checkpoint, checkpoint_offsets, checkpoint_young_offsets
from models.config import ModelConfig
from models.forecaster import Forecaster
from models.kernel import StepKernel
from models.series import (
    Forecast,
    Observation,
    SeriesState,
    series_from_bytes,
    series_to_bytes,
    validate_observations,
)
from models.series_batch import SeriesBatch
from models.state import StreamState


class Predictor:
    """A trained forecaster ready to serve: thread-safe, no autograd, eval mode.

    ``offsets`` (H, Q) are its conformal offsets (``models/calibration.py``),
    applied to every forecast; None for none. ``young``: those of a stream
    that has read few returns, in their place.
    """

    def __init__(
        self,
        model: Forecaster,
        scaler: Scaler,
        version: str = "",
        offsets: np.ndarray | None = None,
        young: YoungOffsets | None = None,
    ) -> None:
        config = model.config
        if len(scaler.features) != config.n_features:
            raise StateError(f"scaler has {len(scaler.features)} features, model {config.n_features}")
        self.model = model.eval()
        self.config: ModelConfig = config
        self.scaler = scaler
        self.version = version
        self.fields = fields_needed(scaler.features)
        self._scale = np.array(scaler.target_scale)  # 0-d: numpy multiplies by it faster than by a float
        self._horizons = range(1, config.horizon + 1)
        self._kernel = StepKernel(model) if config.mode == "latent" else None
        if config.variance_source == "parkinson" and scaler.features[1:2] != ("range",):
            raise StateError(
                f"a Parkinson variance reads the range as second feature, the scaler has {list(scaler.features)}"
            )
        self._raw_columns = config.raw_columns
        shape = (config.horizon, len(config.quantiles))
        self.offsets = np.zeros(shape) if offsets is None else np.asarray(offsets, dtype=np.float64)
        if self.offsets.shape != shape:
            raise StateError(f"offsets have shape {self.offsets.shape}, the model forecasts {shape}")
        self.young = young
        self._calibrated = bool(self.offsets.any()) or young is not None

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any], version: str = "") -> Predictor:
        model, scaler = build_from_checkpoint(checkpoint, version or "checkpoint")
        origin = version or "checkpoint"
        offsets = checkpoint_offsets(checkpoint, model.config, origin)
        return cls(model, scaler, version, offsets, checkpoint_young_offsets(checkpoint, model.config, origin))

    def offsets_after(self, n_obs: int | np.ndarray) -> np.ndarray:
        """(H, Q), or (B, H, Q) for (B,) counts: the offsets of a forecast after ``n_obs`` observations."""
        return self.offsets if self.young is None else self.young.at(n_obs - 1, self.offsets)

    @property
    def min_observations(self) -> int:
        """Observations needed before the first forecast."""
        return 2 if self.config.mode == "latent" else self.config.window + 1

    def validate(self, observations: Sequence[Observation], first_seq: int = 0) -> None:
        """Raise ``DataError`` naming the first bad observation by its seq."""
        validate_observations(observations, self.fields, first_seq)

    def advance(self, state: SeriesState, observations: Sequence[Observation]) -> SeriesState:
        """The state after ``observations``; ``state`` itself is not changed."""
        return self.advance_many([state], [observations])[0]

    def advance_many(
        self, states: Sequence[SeriesState], batches: Sequence[Sequence[Observation]]
    ) -> list[SeriesState]:
        """``[advance(s, b) for s, b in zip(states, batches)]`` with one forward per input shape.

        The streams are independent: stepping them as one batch (B, T, F) gives
        each the result it would get alone, to float32 rounding. Latent streams
        with one new row (a session's request) take one step of the numpy
        kernel together; the others are grouped by their number of new rows T
        for the torch forward; ar windows are all ``window`` rows long.
        ``DataError`` for the first bad observation of any batch; then nothing
        is applied.
        """
        assert len(states) == len(batches), f"{len(states)} states for {len(batches)} batches"
        for state, observations in zip(states, batches, strict=True):
            self.validate(observations, state.n_obs)
        stepped = self._advance_by_kernel(states, batches)
        if len(stepped) == len(states):
            return list(stepped.values())
        rest = [i for i in range(len(states)) if i not in stepped]
        advanced = self._forward_many([states[i] for i in rest], [batches[i] for i in rest])
        done = stepped | dict(zip(rest, advanced, strict=True))
        return [done[i] for i in range(len(states))]

    def _advance_by_kernel(
        self, states: Sequence[SeriesState], batches: Sequence[Sequence[Observation]]
    ) -> dict[int, SeriesState]:
        """The latent streams of ``advance_many`` with one new row, stepped together by the kernel, by index."""
        kernel = self._kernel
        picked = [i for i, batch in enumerate(batches) if len(batch) == 1 and states[i].last_close is not None]
        if kernel is None or not picked:
            return {}
        olds = [states[i] for i in picked]
        bars = [batches[i][0] for i in picked]
        packed = [kernel.zeros(1) if s.stream is None else s.stream.packed() for s in olds]
        stepped = self._step(
            np.array([s.last_close for s in olds], np.float64),
            np.array([s.last_volume for s in olds], np.float64),  # None reads as NaN
            packed[0] if len(packed) == 1 else np.concatenate(packed),
            bars,
        )
        after = SeriesBatch(np.array([s.n_obs + 1 for s in olds]), *stepped)
        return {i: after.state(j, self.config) for j, i in enumerate(picked)}

    def step_many(self, batch: SeriesBatch, bars: Sequence[Observation]) -> SeriesBatch:
        """The streams of ``batch`` after one more bar each (``bars[b]`` for stream b), stepped together
        by the kernel (latent mode): each as ``advance_many`` leaves it. ``bars`` must have passed ``validate``."""
        return SeriesBatch(batch.n_obs + 1, *self._step(batch.last_close, batch.last_volume, batch.packed, bars))

    def _step(
        self, prev_closes: np.ndarray, prev_volumes: np.ndarray, packed: np.ndarray, bars: Sequence[Observation]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One bar per stream through the kernel, after its last close and volume (B,) and its packed
        state (B, P): the bars' closes and volumes (B,) (NaN for none), out (B, H, Q), packed (B, P)."""
        assert self._kernel is not None, "only a latent model steps a carried state"
        closes = np.array([bar.close for bar in bars], np.float64)
        volumes = np.array([bar.volume for bar in bars], np.float64)  # None reads as NaN
        features = self._bar_features(closes, prev_closes, volumes, prev_volumes, bars)  # (B, F)
        out, after = self._kernel.step(self.scaler.transform(features, self._raw_columns), packed)
        return closes, volumes, out, after

    def _forward_many(
        self, states: Sequence[SeriesState], batches: Sequence[Sequence[Observation]]
    ) -> list[SeriesState]:
        """``advance_many`` through the torch forward: one call per input shape."""
        steps = [self._inputs(state, observations) for state, observations in zip(states, batches, strict=True)]
        groups: dict[int, list[_Pending]] = {}
        for step in steps:
            if step.rows is not None:
                groups.setdefault(len(step.rows), []).append(step)
        with torch.inference_mode():
            for group in groups.values():
                self._run(group)
        return [
            self._advanced(state, observations, step)
            for state, observations, step in zip(states, batches, steps, strict=True)
        ]

    def _inputs(self, state: SeriesState, observations: Sequence[Observation]) -> _Pending:
        """What the model must read after ``observations``: new scaled rows, or the ar window."""
        step = _Pending(output=state.output, stream=state.stream, window=state.window)
        new = observations if state.last_close is not None else observations[1:]
        if not new:
            return step
        prev = state if state.last_close is not None else _primed(observations[0])
        rows = self.scaler.transform(self._features(new, prev), self._raw_columns)  # (T, F)
        if self.config.mode == "latent":
            step.rows = rows
        else:
            kept = rows if state.window is None else np.concatenate([state.window, rows])
            step.window = kept[-self.config.window :]
            if len(step.window) == self.config.window:
                step.rows = np.ascontiguousarray(step.window)
        return step

    def _run(self, group: list[_Pending]) -> None:
        """One forward over steps whose rows have the same length; fills their output and stream."""
        rows = [step.rows for step in group if step.rows is not None]
        assert len(rows) == len(group), "every step of a group has rows"
        x = torch.from_numpy(rows[0][None] if len(rows) == 1 else np.stack(rows))  # (B, T, F)
        if self.config.mode == "latent":
            fresh = [self.model.initial_state(1) if s.stream is None else s.stream for s in group]
            out, stream = self.model(x, StreamState.stack(fresh) if len(fresh) > 1 else fresh[0])
            packed = stream.packed()  # (B, P): the form the kernel reads at the next step
            for i, step in enumerate(group):
                step.stream = StreamState.from_packed(packed[i : i + 1], self.config)
        else:
            out, _ = self.model(x)  # ar: each window from a zero state
        last = out[:, -1].numpy()  # (B, H, Q)
        for i, step in enumerate(group):
            step.output = last[i].copy()

    def _advanced(self, state: SeriesState, observations: Sequence[Observation], step: _Pending) -> SeriesState:
        if not observations:
            return state
        last = observations[-1]
        return SeriesState(
            n_obs=state.n_obs + len(observations),
            last_close=float(last.close),
            last_volume=None if last.volume is None else float(last.volume),
            output=step.output,
            stream=step.stream,
            window=step.window,
        )

    def _features(self, new: Sequence[Observation], prev: SeriesState) -> np.ndarray:
        def column(name: str) -> np.ndarray | None:
            return np.array([getattr(o, name) for o in new], dtype=np.float64) if name in self.fields else None

        assert prev.last_close is not None
        return feature_rows(
            self.scaler.features,
            column("close"),  # type: ignore[arg-type]
            prev.last_close,
            high=column("high"),
            low=column("low"),
            volume=column("volume"),
            prev_volume=prev.last_volume,
        )

    def _bar_features(
        self,
        closes: np.ndarray,
        prev_closes: np.ndarray,
        volumes: np.ndarray,
        prev_volumes: np.ndarray,
        bars: Sequence[Observation],
    ) -> np.ndarray:
        """(B, F) features of one new bar per stream, each after its stream's last bar: (B,) arrays in."""

        def column(name: str) -> np.ndarray:
            return np.array([getattr(bar, name) for bar in bars], dtype=np.float64)

        ranges, volumed = "range" in self.scaler.features, "volume" in self.scaler.features
        return bar_features(
            self.scaler.features,
            closes,
            prev_closes,
            high=column("high") if ranges else None,
            low=column("low") if ranges else None,
            volume=volumes if volumed else None,
            prev_volume=prev_volumes if volumed else None,
        )

    def forecast(self, state: SeriesState, offsets: np.ndarray | None = None) -> Forecast | None:
        """The forecast after the last observation, or None with too little history.

        ``offsets`` (H, Q), a session's own, are added to the model's.
        """
        if state.output is None or state.last_close is None:
            return None
        output = state.output.astype(np.float64)  # (H, Q)
        if offsets is not None:
            output = apply_offsets(output, self.offsets_after(state.n_obs) + offsets)
        elif self._calibrated:
            output = apply_offsets(output, self.offsets_after(state.n_obs))
        log_return = output * self._scale  # (H, Q)
        price = np.exp(log_return)
        price *= state.last_close
        return Forecast(
            state.n_obs - 1, list(self._horizons), list(self.config.quantiles), log_return.tolist(), price.tolist()
        )

    def forecasts(self, batch: SeriesBatch) -> list[Forecast]:
        """The forecast after each stream of ``batch``, as ``forecast`` makes it, made for all at once."""
        output = batch.output.astype(np.float64)  # (B, H, Q)
        if self._calibrated:
            output = apply_offsets(output, self.offsets_after(batch.n_obs))
        log_return = output * self._scale
        price = np.exp(log_return)
        price *= batch.last_close[:, None, None]
        horizons, quantiles = list(self._horizons), list(self.config.quantiles)
        return [
            Forecast(as_of, horizons.copy(), quantiles.copy(), returns, prices)
            for as_of, returns, prices in zip(
                (batch.n_obs - 1).tolist(), log_return.tolist(), price.tolist(), strict=True
            )
        ]

    def run(self, observations: Sequence[Observation]) -> Forecast | None:
        """Stateless: the forecast after a whole history, in one call."""
        return self.forecast(self.advance(SeriesState(), observations))

    # serialisation -------------------------------------------------------

    def state_to_bytes(self, state: SeriesState) -> bytes:
        """Compact bytes: a header, the output, then the stream state or window."""
        return series_to_bytes(state, self.config)

    def state_from_bytes(self, blob: bytes) -> SeriesState:
        """Inverse of ``state_to_bytes``; ``StateError`` if the bytes do not fit this model."""
        return series_from_bytes(blob, self.config)


@dataclass
class _Pending:
    """One stream inside ``advance_many``: the rows the model must read, then what it gave."""

    output: np.ndarray | None
    stream: StreamState | None
    window: np.ndarray | None
    rows: np.ndarray | None = None  # (T, F) float32, None when the model has nothing to read


def _primed(first: Observation) -> SeriesState:
    """The state after a first observation: no return yet, only its prices."""
    return SeriesState(last_close=float(first.close), last_volume=first.volume)
