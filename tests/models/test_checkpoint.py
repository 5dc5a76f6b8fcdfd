from __future__ import annotations

import numpy as np
import pytest
import torch

from data.features import Scaler
from latentcast.errors import CheckpointError
from models.calibration import YoungOffsets
from models.checkpoint import build_from_checkpoint, load_checkpoint, make_checkpoint, save_checkpoint
from models.config import ModelConfig
from models.forecaster import Forecaster
from models.predictor import Predictor
from tests.factories import real_bars, tiny_checkpoint


def saved(tmp_path):
    torch.manual_seed(0)
    model = Forecaster(ModelConfig(cell="LSTM", n_features=2, hidden_size=8, conv_channels=4))
    scaler = Scaler.fit(np.random.default_rng(0).normal(size=(50, 2)), ("returns", "range"))
    path = tmp_path / "model.pt"
    save_checkpoint(make_checkpoint(model, scaler, {"val_loss": 0.5}, {"first": "2000-01-03"}), path)
    return model, scaler, path


def test_checkpoint_is_a_plain_dict_loadable_with_weights_only(tmp_path):
    model, scaler, path = saved(tmp_path)
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"format", "config", "state_dict", "scaler", "metrics", "data_span", "offsets"}
    assert raw["config"]["cell"] == "LSTM" and raw["metrics"] == {"val_loss": 0.5}
    rebuilt, rebuilt_scaler = build_from_checkpoint(load_checkpoint(path))
    x = torch.randn(2, 9, 2)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x)[0], model.eval()(x)[0], rtol=0, atol=0)
    assert rebuilt_scaler.to_dict() == scaler.to_dict()
    assert not rebuilt.training


def test_truncated_checkpoint_is_refused(tmp_path):
    _, _, path = saved(tmp_path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: unreadable checkpoint (")


def test_missing_checkpoint_is_refused(tmp_path):
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "none.pt")
    assert str(err.value) == f"{tmp_path / 'none.pt'}: no such checkpoint"


def test_pickled_module_is_refused(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(Forecaster(ModelConfig()), path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == (
        f"{path}: unreadable checkpoint (UnpicklingError: it holds objects other than tensors and plain values, "
        "which weights-only loading refuses)"
    )


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    _, _, path = saved(tmp_path)
    checkpoint = load_checkpoint(path)
    checkpoint["config"]["hidden_size"] = 16
    with pytest.raises(CheckpointError) as err:
        build_from_checkpoint(checkpoint, "v1")
    assert str(err.value).startswith("v1: weights do not fit the config (")


def test_non_finite_weights_are_refused(tmp_path):
    _, _, path = saved(tmp_path)
    checkpoint = load_checkpoint(path)
    checkpoint["state_dict"]["head.bias"][0] = float("nan")
    with pytest.raises(CheckpointError) as err:
        build_from_checkpoint(checkpoint, "v1")
    assert str(err.value) == "v1: weights contain NaN or infinity"


def test_conformal_offsets_travel_with_the_checkpoint_and_old_checkpoints_get_zeros():
    checkpoint = tiny_checkpoint()
    offsets = np.array([[-0.5, 0.1, 0.5], [-0.6, 0.0, 0.6], [-0.7, 0.0, 0.7]])
    checkpoint["offsets"] = offsets.tolist()
    calibrated = Predictor.from_checkpoint(checkpoint)
    np.testing.assert_array_equal(calibrated.offsets, offsets)
    old = {k: v for k, v in checkpoint.items() if k != "offsets"}
    plain = Predictor.from_checkpoint(old)
    assert not plain.offsets.any()
    bars = real_bars("IBM", 50)
    raw, moved = plain.forecast_history(bars), calibrated.forecast_history(bars)
    assert raw is not None and moved is not None
    width = (np.array(raw.log_return)[:, -1:] - np.array(raw.log_return)[:, :1]) / 2
    np.testing.assert_allclose(moved.log_return, np.array(raw.log_return) + offsets * width, rtol=1e-9)


def test_malformed_conformal_offsets_are_refused():
    checkpoint = tiny_checkpoint()
    checkpoint["offsets"] = [[0.0, 0.0, 0.0]]
    with pytest.raises(CheckpointError) as err:
        Predictor.from_checkpoint(checkpoint, "v1")
    assert str(err.value) == "v1: conformal offsets must be 3 x 3 finite numbers"


def test_young_offsets_travel_with_the_checkpoint_and_malformed_ones_are_refused():
    checkpoint = tiny_checkpoint()
    young = YoungOffsets((1, 5, 9), np.arange(18, dtype=np.float64).reshape(2, 3, 3) / 100)
    checkpoint["young_offsets"] = young.to_dict()
    loaded = Predictor.from_checkpoint(checkpoint).young
    assert loaded is not None and loaded.returns_seen == (1, 5, 9)
    np.testing.assert_array_equal(loaded.offsets, young.offsets)
    assert Predictor.from_checkpoint(tiny_checkpoint()).young is None  # a checkpoint without them
    checkpoint["young_offsets"] = {"returns_seen": [1, 5, 9], "offsets": [[[0.0] * 3] * 3]}
    with pytest.raises(CheckpointError) as err:
        Predictor.from_checkpoint(checkpoint, "v1")
    assert str(err.value) == "v1: malformed young offsets (young offsets need 2 increasing edges from 1, got [1, 5, 9])"
    checkpoint["young_offsets"] = {"returns_seen": [1, 5], "offsets": [[[0.0] * 3] * 2]}
    with pytest.raises(CheckpointError) as err:
        Predictor.from_checkpoint(checkpoint, "v1")
    assert str(err.value) == "v1: young offsets must be 3 x 3 finite numbers per bucket"
