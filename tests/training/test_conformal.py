"""Split-conformal offsets: moved by them, the validation outcomes fall below each quantile as often as its level."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data import sources
from data.features import build_series, fit_scaler, split_dates
from models.calibration import apply_offsets, half_width
from models.forecaster import Forecaster
from tests.factories import tiny_config
from training.conformal import conformal_scores, fit_offsets


@pytest.mark.parametrize("scaling", ["global", "volatility"])
def test_offsets_calibrate_every_quantile_on_the_validation_span(scaling):
    config = tiny_config(scaling=scaling)
    series = build_series(sources.bundled(["IBM", "MSFT"]), ("returns",), config.horizon)
    split = split_dates(series)
    scaler = fit_scaler(series, split, ("returns",))
    torch.manual_seed(0)
    model = Forecaster(config).eval()
    offsets = fit_offsets(model, scaler, series, split)
    assert offsets.shape == (3, 3)
    scores, known = conformal_scores(model, scaler, series, split)
    for h in range(3):
        below = (scores[known[:, h], h] < offsets[h]).mean(axis=0)  # (Q,) share of outcomes below each quantile
        np.testing.assert_allclose(below, config.quantiles, atol=2 / known[:, h].sum())


def test_applied_offsets_move_by_half_widths_and_keep_quantiles_in_order():
    quantiles = np.array([[[-1.0, 0.0, 1.0], [-2.0, 0.5, 2.0]]])  # (1, H=2, Q=3)
    offsets = np.array([[0.5, 0.0, -0.5], [-0.1, 2.0, 0.1]])
    moved = apply_offsets(quantiles, offsets)
    np.testing.assert_allclose(half_width(quantiles)[0, :, 0], [1.0, 2.0])
    np.testing.assert_allclose(moved[0, 0], [-0.5, 0.0, 0.5])
    np.testing.assert_allclose(moved[0, 1], [-2.2, 2.2, 4.5])  # the median crossed the top: sorted again
