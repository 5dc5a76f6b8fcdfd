from __future__ import annotations

import pytest

from latentcast.errors import ConfigError
from models.config import DEFAULT_SCALING, ModelConfig, cell_class


def test_round_trips_through_a_dict():
    config = ModelConfig(mode="ar", cell="LSTM", n_features=3, quantiles=(0.05, 0.5, 0.95), window=20)
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["quantiles"] == [0.05, 0.5, 0.95]


def test_unknown_cell_lists_the_valid_ones():
    with pytest.raises(ConfigError) as err:
        cell_class("Transformer")
    assert str(err.value) == "unknown cell 'Transformer'; valid cells: RNN, LSTM, GRU"
    with pytest.raises(ConfigError):
        ModelConfig(cell="lstm")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mode": "seq2seq"}, "unknown mode 'seq2seq'; valid modes: ar, latent"),
        ({"hidden_size": 0}, "hidden_size must be a positive integer, got 0"),
        ({"window": 2.5}, "window must be a positive integer, got 2.5"),
        ({"dropout": 1.0}, "dropout must be in [0, 1), got 1.0"),
        ({"quantiles": (0.9, 0.5)}, "quantiles must be increasing, distinct and in (0, 1), got [0.9, 0.5]"),
        ({"quantiles": (0.1, 0.9)}, "quantiles must include the median 0.5, got [0.1, 0.9]"),
        ({"scaling": "local"}, "unknown scaling 'local'; valid scalings: global, volatility"),
        ({"ewma_decay": 1.0}, "ewma_decay must be in (0, 1), got 1.0"),
        ({"variance_floor": 0.0}, "variance_floor, variance_prior and input_clip must be positive"),
        ({"variance_prior": 0.0}, "variance_floor, variance_prior and input_clip must be positive"),
        (
            {"variance_source": "range"},
            "unknown variance_source 'range'; valid sources: returns, parkinson, range_or_returns",
        ),
        ({"range_ratio": 0.0}, "range_ratio must be positive and finite, got 0.0"),
        (
            {"variance_source": "range_or_returns", "n_features": 2, "scaling": "global"},
            "variance_source 'range_or_returns' needs volatility scaling and the range as second feature, "
            "got scaling 'global' with 2 feature(s)",
        ),
        (
            {"variance_source": "parkinson", "scaling": "volatility"},
            "variance_source 'parkinson' needs volatility scaling and the range as second feature, "
            "got scaling 'volatility' with 1 feature(s)",
        ),
        (
            {"variance_source": "parkinson", "n_features": 2, "scaling": "global"},
            "variance_source 'parkinson' needs volatility scaling and the range as second feature, "
            "got scaling 'global' with 2 feature(s)",
        ),
    ],
)
def test_invalid_values_are_refused(fields, message):
    with pytest.raises(ConfigError) as err:
        ModelConfig(**fields)
    assert str(err.value) == message


def test_unknown_fields_are_refused():
    with pytest.raises(ConfigError) as err:
        ModelConfig.from_dict({"mode": "ar", "layers": 2})
    assert str(err.value) == "unknown model config fields: layers"


def test_a_config_saved_before_scaling_existed_is_refused():
    raw = ModelConfig().to_dict()
    for name in ("scaling", "ewma_decay", "variance_floor", "variance_prior", "input_clip"):
        del raw[name]
    with pytest.raises(ConfigError) as err:
        ModelConfig.from_dict(raw)
    assert str(err.value) == "model config has no scaling: it was saved by a build too old to read; retrain it"


def test_new_models_and_the_dataclass_share_one_default_scaling():
    assert ModelConfig().scaling == DEFAULT_SCALING


def test_a_config_saved_before_the_variance_carried_its_weight_loads_with_the_plain_ewma():
    raw = ModelConfig(scaling="volatility").to_dict()
    del raw["variance_prior"]
    loaded = ModelConfig.from_dict(raw)
    assert loaded.variance_prior == pytest.approx(1 / (1 - loaded.ewma_decay))
    assert ModelConfig.from_dict(ModelConfig().to_dict()).variance_prior == ModelConfig().variance_prior


def test_the_variance_source_is_saved_and_a_config_without_it_reads_returns():
    config = ModelConfig(n_features=2, scaling="volatility", variance_source="parkinson")
    assert ModelConfig.from_dict(config.to_dict()) == config and config.raw_columns == 2
    older = {k: v for k, v in config.to_dict().items() if k != "variance_source"}
    assert ModelConfig.from_dict(older).variance_source == "returns"
    assert ModelConfig.from_dict(older).raw_columns == 1 and ModelConfig(scaling="global").raw_columns == 0
    mixed = ModelConfig(n_features=2, scaling="volatility", variance_source="range_or_returns", range_ratio=1.3)
    assert ModelConfig.from_dict(mixed.to_dict()).range_ratio == 1.3 and mixed.to_dict()["range_ratio"] == 1.3
    # fit, not chosen: a retrain's challenger with its own ratio is of its champion's configuration
    assert ModelConfig.from_dict({**mixed.to_dict(), "range_ratio": 2.0}) == mixed
    assert (mixed.raw_columns, mixed.conv_inputs, config.conv_inputs) == (2, 3, 2)
