"""Forecasting from raw observations, one batch at a time, with the state carried.

A ``Predictor`` wraps a trained forecaster and its scaler. ``advance`` takes a
``SeriesState`` and new observations (prices as they arrive) and returns the
next state; ``forecast`` reads the forecast after the last observation. The
state serialises to compact bytes, so a service can keep it between requests:

- latent mode carries the model's ``StreamState``: one new observation costs
  one step, whatever the length of the history;
- ar mode carries its last ``window`` scaled feature rows and re-reads them
  from a zero state at every forecast.

Feeding observations one at a time gives the same forecasts as one call over
the whole history (to float32 rounding).

A service keeping sessions calls ``advance_stored`` once per batch of appends:
states as bytes and observations in, each stream's new state bytes and forecast
out, validation included. There the live latent streams that take one new
observation (a session's usual request) are read, stepped by the numpy
``StepKernel`` and written together as arrays (``SeriesBatch``); everything
else goes through the torch forward.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from data.features import Scaler, bar_features, feature_rows, fields_needed
from latentcast.errors import DataError, StateError
from models.calibration import YoungOffsets, apply_offsets
from models.checkpoint import build_from_checkpoint, checkpoint_offsets, checkpoint_young_offsets
from models.config import RANGE_SOURCES, ModelConfig
from models.forecaster import Forecaster
from models.kernel import StepKernel
from models.series import (
    Forecast,
    Observation,
    SeriesState,
    Stepped,
    StoredStep,
    series_from_bytes,
    series_to_bytes,
    validate_observations,
)
from models.series_batch import SeriesBatch, batch_from_bytes, batch_to_bytes
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
        self.fields = fields_needed(scaler.features)  # the values read, when sent
        # a range_or_returns model reads a bar's high and low where sent, and closes alone where not
        self._together = ("high", "low") if config.ranges_optional else ()
        self.required = tuple(f for f in self.fields if f not in self._together)
        self._scale = np.array(scaler.target_scale)  # 0-d: numpy multiplies by it faster than by a float
        self._horizons = range(1, config.horizon + 1)
        self._kernel = StepKernel(model) if config.mode == "latent" else None
        if config.variance_source in RANGE_SOURCES and scaler.features[1:2] != ("range",):
            raise StateError(f"a range variance reads the range as second feature, not {list(scaler.features)}")
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
        validate_observations(observations, self.required, first_seq, self._together)

    def advance(self, state: SeriesState, observations: Sequence[Observation]) -> SeriesState:
        """The state after ``observations``; ``state`` itself is not changed."""
        return self.advance_many([state], [observations])[0]

    def advance_many(
        self, states: Sequence[SeriesState], batches: Sequence[Sequence[Observation]]
    ) -> list[SeriesState]:
        """``[advance(s, b) for s, b in zip(states, batches)]`` with one forward per input shape.

        The streams are independent: stepping them as one batch (B, T, F) gives
        each the result it would get alone, to float32 rounding. They are
        grouped by their number of new rows T; ar windows are all ``window``
        rows long. ``DataError`` for the first bad observation of any batch;
        then nothing is applied.
        """
        assert len(states) == len(batches), f"{len(states)} states for {len(batches)} batches"
        for state, observations in zip(states, batches, strict=True):
            self.validate(observations, state.n_obs)
        return self._forward_many(states, batches)

    def advance_stored(self, steps: Sequence[StoredStep]) -> list[Stepped | Exception | None]:
        """Each stream after its step: its new state's bytes and forecast, None for a step of nothing new
        (validated only), or why it cannot step: ``DataError`` naming its batch's first bad observation,
        ``StateError`` for a state that is not this model's or does not hold ``n_obs`` observations.

        The live latent streams that take one new observation without offsets of their own are read,
        stepped by the kernel, forecast and written together as arrays (``_stored_by_kernel``); the
        others one by one around one ``advance_many``. Both give the same bytes and forecasts.
        """
        results: dict[int, Stepped | Exception | None] = {}
        for i, step in enumerate(steps):
            try:
                self.validate(step.observations, step.first_seq)
            except DataError as exc:  # refused alone: the other streams go on
                results[i] = exc
                continue
            if not step.new:
                results[i] = None
        lane = [i for i, step in enumerate(steps) if i not in results and step.new == 1 and step.offsets is None]
        results |= self._stored_by_kernel(steps, lane)
        read: list[tuple[int, SeriesState]] = []
        for i, step in enumerate(steps):
            if i not in results:
                try:
                    state = self.state_from_bytes(step.state)
                    if state.n_obs != step.n_obs:
                        raise StateError(f"state holds {state.n_obs} observations, next_seq is {step.n_obs}")
                    read.append((i, state))
                except StateError as exc:
                    results[i] = exc
        advanced = self._forward_many([state for _, state in read], [steps[i].tail for i, _ in read]) if read else []
        for (i, _), state in zip(read, advanced, strict=True):
            forecast = self.forecast(state, steps[i].offsets)
            results[i] = Stepped(self.state_to_bytes(state), state.n_obs, state.last_close, state.output, forecast)
        return [results[i] for i in range(len(steps))]

    def _stored_by_kernel(self, steps: Sequence[StoredStep], picked: list[int]) -> dict[int, Stepped]:
        """The ``picked`` steps (one new observation each) whose states read as live streams of this latent
        model holding their ``n_obs``, stepped together by the kernel as arrays, by index. The others are
        left to the one-by-one path, which reads them or says why it cannot."""
        if self._kernel is None or not picked:
            return {}
        batch, read = batch_from_bytes([steps[i].state for i in picked], self.config)
        picked = [picked[k] for k in read]
        n_obs = [steps[i].n_obs for i in picked]
        if batch.n_obs.tolist() != n_obs:  # compared as lists: the arrays' calls cost more for a few streams
            counted = batch.n_obs == np.array(n_obs, np.int64)
            batch = batch.take(counted)
            picked = [i for i, fits in zip(picked, counted.tolist(), strict=True) if fits]
        if not picked:
            return {}
        bars = [steps[i].observations[-1] for i in picked]
        closes = np.array([bar.close for bar in bars], np.float64)
        volumes = np.array([bar.volume for bar in bars], np.float64)  # None reads as NaN
        ranged, volumed = "range" in self.scaler.features, "volume" in self.scaler.features
        high, low = [
            np.array([getattr(bar, n) for bar in bars], np.float64) if ranged else None for n in ("high", "low")
        ]
        prev = (volumes, batch.last_volume) if volumed else (None, None)
        features = bar_features(self.scaler.features, closes, batch.last_close, high, low, *prev)  # (B, F)
        out, packed = self._kernel.step(self.scaler.transform(features, self._raw_columns), batch.packed)
        after = SeriesBatch(batch.n_obs + 1, closes, volumes, out, packed)  # out (B, H, Q), packed (B, P)
        written = zip(
            batch_to_bytes(after, self.config),
            after.n_obs.tolist(),
            after.last_close.tolist(),
            self.forecasts(after),
            strict=True,
        )
        return {
            i: Stepped(blob, n_obs, close, after.output[j], forecast)
            for j, (i, (blob, n_obs, close, forecast)) in enumerate(zip(picked, written, strict=True))
        }

    def _forward_many(
        self, states: Sequence[SeriesState], batches: Sequence[Sequence[Observation]]
    ) -> list[SeriesState]:
        """``advance_many`` through the torch forward: one call per input shape."""
        steps = [self._inputs(state, observations) for state, observations in zip(states, batches, strict=True)]
        groups: dict[int, list[_Pending]] = {}
        for step in steps:
            if step.rows is not None:
                groups.setdefault(len(step.rows), []).append(step)
        if groups:  # none when every stream was stepped by the kernel: torch is not entered
            with torch.inference_mode():
                for group in groups.values():
                    self._fill_outputs(group)
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

    def _fill_outputs(self, group: list[_Pending]) -> None:
        """Fills the output and stream of each step by one forward over them all (their rows have one length)."""
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

    def forecast_history(self, observations: Sequence[Observation]) -> Forecast | None:
        """Stateless: the forecast after a whole history, in one call (None while it is too short)."""
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
