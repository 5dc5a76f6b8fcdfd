from __future__ import annotations

import numpy as np
import pytest
import torch

from data.errors import CheckpointError
from data.features import Scaler
from models.checkpoint import build_from_checkpoint, load_checkpoint, make_checkpoint, save_checkpoint
from models.config import ModelConfig
from models.forecaster import Forecaster


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
    assert set(raw) == {"format", "config", "state_dict", "scaler", "metrics", "data_span"}
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
