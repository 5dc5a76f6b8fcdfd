"""The forecaster: a causal Conv1d front end, a recurrent core, a quantile head.

    x (B, T, F) -> causal conv (B, T, C) -> RNN/LSTM/GRU (B, T, Hd)
      -> head (B, T, H, Q): for h = 1..H, quantiles of log(close_{t+h} / close_t)

With volatility scaling (``models/volatility.py``) the return column is
first divided by the stream's volatility, and the quantiles are scaled back by
it: the output is then, as without it, in the scaler's units of return. The
conv reads ``ModelConfig.conv_inputs`` columns: the features, then the columns
derived from them there (whether the day's range was sent, then each
variance scale's log volatility ratio). With ``quantile_scale == "mix"`` the
quantiles are scaled by the volatility of a learnt mix of every variance instead.

The conv has no padding of its own: its left context is the ``kernel - 1``
inputs carried in ``StreamState`` (zeros at the start of a stream). So running
a sequence in one call equals running it in pieces with the state carried, and
no output at t ever reads an input after t.
"""

from __future__ import annotations

import functools
from typing import Literal, overload

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models import fused_gru
from models.config import ModelConfig, cell_class
from models.state import StreamState
from models.volatility import (
    ewma_variances,
    initial_volatility,
    range_inputs,
    scale_columns,
    scaled_variances,
    standardised_returns,
)


class Forecaster(nn.Module):
    """Conv1d + recurrent quantile forecaster, built only from its ``ModelConfig``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.conv = nn.Conv1d(config.conv_inputs, config.conv_channels, config.conv_kernel)
        self.rnn = cell_class(config.cell)(
            input_size=config.conv_channels,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            batch_first=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.horizon * len(config.quantiles))
        if config.quantile_scale == "mix":  # the logits of the weights of the variances the quantiles scale by
            self.scale_mix = nn.Parameter(torch.zeros(1 + len(config.variance_scales)))

    def initial_state(self, batch_size: int) -> StreamState:
        """The zero state of ``batch_size`` fresh streams, on the device of the weights."""
        c, device = self.config, self.conv.weight.device
        conv = torch.zeros(batch_size, c.conv_inputs, c.conv_kernel - 1, device=device)
        hidden = torch.zeros(c.num_layers, batch_size, c.hidden_size, device=device)
        volatility = torch.from_numpy(initial_volatility(batch_size, c)).to(device) if c.volatility_scaled else None
        if c.cell == "LSTM":
            return StreamState(conv, (hidden, torch.zeros_like(hidden)), volatility)
        return StreamState(conv, hidden, volatility)

    @overload
    def forward(
        self,
        x: Tensor,
        state: StreamState | None = ...,
        last: int | None = ...,
        *,
        with_volatility: Literal[False] = ...,
    ) -> tuple[Tensor, StreamState]: ...

    @overload
    def forward(
        self, x: Tensor, state: StreamState | None = ..., last: int | None = ..., *, with_volatility: Literal[True]
    ) -> tuple[Tensor, StreamState, Tensor | None]: ...

    def forward(
        self, x: Tensor, state: StreamState | None = None, last: int | None = None, *, with_volatility: bool = False
    ) -> tuple[Tensor, StreamState] | tuple[Tensor, StreamState, Tensor | None]:
        """Forecast after every step of ``x``, or after its ``last`` steps only.

        x: (B, T, F) scaled features (with volatility scaling, returns neither
        centred nor clipped); state: carried from the previous call, or None for
        a zero state; last: forecast after the final ``last`` steps only (the
        head does not run on the others: ar training scores one step of each
        window). Returns (out, state): out is (B, S, H, Q) scaled cumulative
        log-return quantiles, increasing along Q, with S = ``last`` or T; the
        state is that after all T steps either way.

        with_volatility: return (out, state, volatility) instead, volatility
        the (B, S) volatility by which each output step was scaled (None
        without volatility scaling). Training divides targets and quantiles by
        it, so that every step weighs the same in the loss whatever the
        volatility of its day; it comes from the same EWMA recursion as out.
        """
        c = self.config
        batch, steps, n_features = x.shape
        assert n_features == c.n_features, f"expected {c.n_features} features, got {n_features}"
        shown = steps if last is None else last
        assert 1 <= shown <= steps, f"cannot forecast after the last {shown} of {steps} steps"
        if state is None:
            state = self.initial_state(batch)
        assert state.batch_size == batch, f"state holds {state.batch_size} streams, input {batch}"
        variances = after = None
        if c.volatility_scaled:
            x, variances, after = self._standardise(x, state)
        seq = torch.cat([state.conv, x.transpose(1, 2)], dim=2)  # (B, F', k-1+T), F' = conv_inputs
        conv_buffer = seq[:, :, steps:]  # (B, F', k-1): the newest k-1 inputs
        # the causal conv as one product over each step's receptive field: what nn.Conv1d computes, in the
        # (B, T, C) layout that the recurrence reads, and on the CPU at these sizes in less time than its kernel
        fields = seq.unfold(2, c.conv_kernel, 1).transpose(1, 2).reshape(batch, steps, -1)  # (B, T, F*k)
        weight = self.conv.weight.reshape(c.conv_channels, -1)  # (C, F*k), in the same (F, k) order
        z = self.drop(F.relu(F.linear(fields, weight, self.conv.bias)))  # (B, T, C)
        if fused_gru.applies(self.rnn, z):  # training and evaluation on the CPU: each GRU step one fused loop
            y, hidden = fused_gru.gru(self.rnn, z, state.hidden)
        else:
            y, hidden = self.rnn(z, state.hidden)  # (B, T, Hd)
        raw = self.head(self.drop(y[:, steps - shown :])).view(batch, shown, c.horizon, len(c.quantiles))
        out = monotone_quantiles(raw, c.median_index)
        volatility, carried = None, StreamState(conv_buffer, hidden)
        if variances is not None and after is not None:
            # (B, S): the volatility after each forecast step's return
            if variances.ndim == 3:  # every variance, mixed by the learnt weights
                mixed = torch.from_numpy(variances[:, 1 + steps - shown :]).to(x.device) @ self.mix_weights()
                out = out * torch.sqrt(mixed)[:, :, None, None]
                volatility = torch.sqrt(mixed.detach())
            else:
                volatility = torch.from_numpy(np.sqrt(variances[:, 1 + steps - shown :])).to(x.device)
                out = out * volatility[:, :, None, None]
            carried = StreamState(conv_buffer, hidden, torch.from_numpy(after).to(x.device))
        return (out, carried, volatility) if with_volatility else (out, carried)

    def _standardise(self, x: Tensor, state: StreamState) -> tuple[Tensor, np.ndarray, np.ndarray]:
        """x (B, T, F') with returns (and ranges) over the volatility before them and the derived columns
        last (F' = ``conv_inputs``: whether the day's range was sent, then each variance scale's log ratio to
        the main one); the (B, T + 1) EWMA variances (B, T + 1, 1 + S with a mix); the (B, 2 + 2S) volatility
        state after the last day.

        The recursion runs in numpy, on the CPU, wherever ``x`` is (a copy from and to a GPU).
        """
        assert state.volatility is not None, "a volatility-scaled model needs a state carrying the variance"
        raw = self.config.raw_columns
        moves = x[..., :raw].detach().cpu().numpy()  # (B, T, 1): the returns, (B, T, 2): and the ranges
        before = state.volatility.detach().cpu().numpy()  # (B, 2 + 2S)
        ranges = moves[..., 1] if raw == 2 else None
        if self.config.variance_scales:
            every, after = scaled_variances(moves[..., 0], before, self.config, ranges)
            variances = every if self.config.quantile_scale == "mix" else np.ascontiguousarray(every[..., 0])
        else:
            variances, weights = ewma_variances(moves[..., 0], before[:, 0], before[:, 1], self.config, ranges)
            after = np.stack([variances[:, -1], weights[:, -1]], axis=1)  # (B, 2)
        main = variances[:, :-1, 0] if variances.ndim == 3 else variances[:, :-1]
        scaled = [standardised_returns(moves[..., 0], main, self.config)]
        flags: list[np.ndarray] = []  # whether each day's range was sent (range_or_returns)
        if ranges is not None:
            scaled_range, flags = range_inputs(ranges, main, self.config)
            scaled.append(scaled_range)
        standard = torch.from_numpy(np.stack(scaled, axis=2)).to(x.device)
        parts = [standard, x[..., raw:]]  # then the derived columns: the flag, each scale's ratio
        if flags:
            parts.append(torch.from_numpy(np.stack(flags, axis=2)).to(x.device))
        if self.config.variance_scales:
            parts.append(torch.from_numpy(scale_columns(every, self.config)).to(x.device))
        return torch.cat(parts, dim=2), variances, after

    def mix_weights(self) -> Tensor:
        """(1 + S,): the weights of the main variance and each scale's in the quantiles' scale (``mix``)."""
        return torch.softmax(self.scale_mix, dim=0)


def monotone_quantiles(raw: Tensor, median: int) -> Tensor:
    """(..., Q) unconstrained -> (..., Q) increasing: the median, then softplus gaps either side.

    out_j = raw_m + sum of softplus(raw_i) for m < i <= j, and
    out_j = raw_m - sum of softplus(raw_i) for j <= i < m,
    written as one product with a signed triangular matrix (one op, not a
    loop of cumulative sums: this runs at every step of every session).
    """
    signs = gap_signs(raw.shape[-1], median).to(raw.dtype)  # (Q, Q)
    return raw[..., median : median + 1] + F.softplus(raw) @ signs


@functools.cache
def gap_signs(q: int, median: int) -> Tensor:
    """(Q, Q): +1 where gap i adds to output j above the median, -1 below, else 0."""
    with torch.inference_mode(False):  # a normal tensor: training saves it for backward
        i = torch.arange(q).unsqueeze(1)
        j = torch.arange(q).unsqueeze(0)
        return ((median < i) & (i <= j)).float() - ((j <= i) & (i < median)).float()
