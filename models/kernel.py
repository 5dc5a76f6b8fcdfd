"""One inference step of a latent forecaster in numpy, for B streams at once.

A live session advances one observation per request. Stepping the torch
module spends far more time in dispatch than in arithmetic
(docs/performance.md); this kernel does the same arithmetic as
``Forecaster.forward`` (float32, eval mode) with a few numpy calls. It is a
second copy of the model's math, so ``tests/models/test_kernel.py`` checks it
against ``Forecaster.forward``.

States are packed: row b of a (B, P) float32 array holds stream b's values in
the order of its ``StreamState`` bytes: the conv inputs (F', k-1; F' = ``conv_inputs``), then h
(L, Hd), then c (L, Hd) for an LSTM, then the EWMA variance and its weight of
a volatility-scaled model, and those of each variance scale (whose volatility
arithmetic is ``models/volatility.py``'s, shared with the torch forward).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch import Tensor, nn

from models.forecaster import Forecaster, gap_signs
from models.volatility import (
    ewma_variances,
    initial_volatility,
    range_inputs,
    scale_columns,
    scaled_variances,
    standardised_returns,
)


@dataclass(frozen=True)
class _Layer:
    """One recurrent layer's weights, transposed for ``x @ w``: (In, G*Hd), (Hd, G*Hd), (G*Hd,) twice."""

    ih: np.ndarray
    hh: np.ndarray
    b_ih: np.ndarray
    b_hh: np.ndarray


class StepKernel:
    """The weights of one latent ``Forecaster`` as float32 numpy copies, and its one-step math."""

    def __init__(self, model: Forecaster) -> None:
        c = model.config
        assert c.mode == "latent", "only a latent model steps a carried state"
        conv, head = model.conv, model.head
        assert conv.bias is not None
        self.n_features, self.kernel, self.hidden_size = c.n_features, c.conv_kernel, c.hidden_size
        self.shape = (c.horizon, len(c.quantiles))
        self.median = c.median_index
        self.lstm = c.cell == "LSTM"
        self.inputs = c.conv_inputs  # the features, then the derived columns: the range's flag, the scales'
        self.conv_size = self.inputs * (c.conv_kernel - 1)
        self.config = c
        self.scaled = c.volatility_scaled
        self.scales = bool(c.variance_scales)
        self.raw = c.raw_columns
        self.volatility = (2 + 2 * len(c.variance_scales)) * self.scaled  # the (variance, weight) pairs' floats
        self.width = self.conv_size + (2 if self.lstm else 1) * c.num_layers * c.hidden_size + self.volatility  # P
        self.variance_at = self.width - self.volatility  # the main variance's column
        self.mix = _array(model.mix_weights()) if c.quantile_scale == "mix" else None
        self.conv_w = _array(conv.weight.reshape(c.conv_channels, -1).T)  # (F*k, C), in the (F, k) order of seq
        self.conv_b = _array(conv.bias)
        self.head_w, self.head_b = _array(head.weight.T), _array(head.bias)  # (Hd, H*Q), (H*Q,)
        self.signs = _array(gap_signs(len(c.quantiles), c.median_index))  # (Q, Q)
        self.layers = [_layer(model.rnn, i) for i in range(c.num_layers)]
        self._cell = _CELLS[c.cell]

    def zeros(self, batch: int) -> np.ndarray:
        """(B, P): the packed state of fresh streams."""
        packed = np.zeros((batch, self.width), np.float32)
        if self.scaled:
            packed[:, self.variance_at :] = initial_volatility(batch, self.config)
        return packed

    def step(self, x: np.ndarray, packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x (B, F) float32 scaled rows, packed (B, P) -> (out (B, H, Q) scaled quantiles, packed (B, P))."""
        batch, f, k, hd = len(x), self.n_features, self.kernel, self.hidden_size
        assert x.shape == (batch, f) and packed.shape == (batch, self.width), (x.shape, packed.shape)
        after = np.empty_like(packed)
        seq = np.empty((batch, self.inputs, k), np.float32)  # the conv's receptive field, oldest first
        seq[:, :, :-1] = packed[:, : self.conv_size].reshape(batch, self.inputs, k - 1)
        seq[:, :f, -1] = x
        if self.scales:
            self._scale_inputs(x, packed, seq, after)
        elif self.scaled:
            ranges = x[:, 1:2] if self.raw == 2 else None
            variances, weights = ewma_variances(x[:, :1], packed[:, -2], packed[:, -1], self.config, ranges)  # (B, 2)
            self._moves(x, variances[:, 0], seq)
            after[:, -2], after[:, -1] = variances[:, 1], weights[:, 1]
        after[:, : self.conv_size] = seq[:, :, 1:].reshape(batch, -1)
        z = np.dot(seq.reshape(batch, -1), self.conv_w)  # (B, C)
        z += self.conv_b
        np.maximum(z, 0.0, out=z)
        cells = self.conv_size + len(self.layers) * hd  # where an LSTM's c starts
        for i, layer in enumerate(self.layers):
            h_at, c_at = self.conv_size + i * hd, cells + i * hd
            c = packed[:, c_at : c_at + hd] if self.lstm else None
            z, c = self._cell(z, packed[:, h_at : h_at + hd], c, layer)  # (B, Hd)
            after[:, h_at : h_at + hd] = z
            if c is not None:
                after[:, c_at : c_at + hd] = c
        raw = np.dot(z, self.head_w)  # (B, H*Q)
        raw += self.head_b
        raw = raw.reshape(-1, self.shape[1])  # (B*H, Q)
        out = np.dot(softplus(raw), self.signs)
        out += raw[:, self.median : self.median + 1]
        out = out.reshape(batch, *self.shape)
        if self.mix is not None:  # the learnt mix of every variance (each pair's first float)
            out *= np.sqrt(np.dot(after[:, self.variance_at :: 2], self.mix))[:, None, None]
        elif self.scaled:
            out *= np.sqrt(after[:, self.variance_at])[:, None, None]
        return out, after

    def _scale_inputs(self, x: np.ndarray, packed: np.ndarray, seq: np.ndarray, after: np.ndarray) -> None:
        """With variance scales: every variance stepped into ``after``, the newest conv inputs scaled in ``seq``."""
        f, at = self.n_features, self.variance_at
        ranges = x[:, 1:2] if self.raw == 2 else None
        variances, after[:, at:] = scaled_variances(x[:, :1], packed[:, at:], self.config, ranges)  # (B, 2, 1 + S)
        flags = self._moves(x, variances[:, 0, 0], seq)
        seq[:, f + flags :, -1] = scale_columns(variances, self.config)[:, 0]

    def _moves(self, x: np.ndarray, before: np.ndarray, seq: np.ndarray) -> int:
        """The returns (and the ranges) over the (B,) volatility ``before`` them as the newest conv inputs in
        ``seq``, then the columns derived from the ranges (whether each was sent); how many of those."""
        seq[:, 0, -1] = standardised_returns(x[:, 0], before, self.config)
        if self.raw < 2:
            return 0
        seq[:, 1, -1], flags = range_inputs(x[:, 1], before, self.config)
        for j, column in enumerate(flags):
            seq[:, self.n_features + j, -1] = column
        return len(flags)


def _array(tensor: Tensor) -> np.ndarray:
    """A float32 C-contiguous copy of a weight (a copy: training the model later leaves the kernel as it was)."""
    return np.array(tensor.detach().numpy(), dtype=np.float32, order="C")


def _layer(rnn: nn.Module, i: int) -> _Layer:
    """Layer ``i``'s weights in PyTorch's gate order, transposed."""
    weights = [getattr(rnn, f"{name}_l{i}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    return _Layer(_array(weights[0].T), _array(weights[1].T), _array(weights[2]), _array(weights[3]))


def softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)) without overflow: torch's softplus to float32 rounding.

    torch returns x itself above 20; so does this, as log(1 + exp(-x)) is then
    below half an ulp of x.
    """
    return np.logaddexp(0.0, x, dtype=x.dtype)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """In place: 1 / (1 + exp(-x)) written with tanh, which cannot overflow."""
    np.multiply(x, 0.5, out=x)
    np.tanh(x, out=x)
    np.multiply(x, 0.5, out=x)
    return np.add(x, 0.5, out=x)


def _rnn(x: np.ndarray, h: np.ndarray, c: None, w: _Layer) -> tuple[np.ndarray, None]:
    """h' = tanh(W_ih x + b_ih + W_hh h + b_hh)."""
    gates = np.dot(x, w.ih)
    gates += w.b_ih
    gates += np.dot(h, w.hh)
    gates += w.b_hh
    return np.tanh(gates, out=gates), None


def _gru(x: np.ndarray, h: np.ndarray, c: None, w: _Layer) -> tuple[np.ndarray, None]:
    """PyTorch's GRU, gates (r, u, n): n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = n + u * (h - n)."""
    hd = h.shape[1]
    gi = np.dot(x, w.ih)
    gi += w.b_ih
    gh = np.dot(h, w.hh)
    gh += w.b_hh
    ru = _sigmoid(gi[:, : 2 * hd] + gh[:, : 2 * hd])
    n = gh[:, 2 * hd :]
    n *= ru[:, :hd]
    n += gi[:, 2 * hd :]
    np.tanh(n, out=n)
    return n + ru[:, hd:] * (h - n), None


def _lstm(x: np.ndarray, h: np.ndarray, c: np.ndarray, w: _Layer) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's LSTM, gates (i, f, g, o): c' = f * c + i * g, h' = o * tanh(c')."""
    hd = h.shape[1]
    gates = np.dot(x, w.ih)
    gates += w.b_ih
    gates += np.dot(h, w.hh)
    gates += w.b_hh
    _sigmoid(gates[:, : 2 * hd])
    np.tanh(gates[:, 2 * hd : 3 * hd], out=gates[:, 2 * hd : 3 * hd])
    _sigmoid(gates[:, 3 * hd :])
    cell = gates[:, hd : 2 * hd] * c
    cell += gates[:, :hd] * gates[:, 2 * hd : 3 * hd]
    return gates[:, 3 * hd :] * np.tanh(cell), cell


_CELLS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray | None]]] = {"RNN": _rnn, "GRU": _gru, "LSTM": _lstm}
