"""``ModelConfig``: everything needed to rebuild a forecaster, saved beside its weights."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from torch import nn

from latentcast.errors import ConfigError

MODES = ("ar", "latent")
CELLS = ("RNN", "LSTM", "GRU")
SCALINGS = ("global", "volatility")
# What a volatility-scaled stream's variance reads each day: the squared return, or (with the ``range``
# feature second) Parkinson's range variance, (log(high / low))^2 / (4 ln 2), on every day or, with
# ``range_or_returns``, on the days whose high and low were sent (``models/volatility.py``).
VARIANCE_SOURCES = ("returns", "parkinson", "range_or_returns")
RANGE_SOURCES = ("parkinson", "range_or_returns")  # the sources that read the range, second feature
# What a volatility-scaled model's quantiles are learnt in units of: the main variance's volatility, or (with
# variance scales) that of a mix of every variance, its weights learnt with the network (``models/forecaster.py``).
QUANTILE_SCALES = ("main", "mix")
# What new models are trained with (`latentcast train`, `make run`, a first retrain): the better scaling by the
# backtest's Diebold-Mariano test, docs/backtest.md says why.
DEFAULT_SCALING = "volatility"


def cell_class(name: str) -> type[nn.RNN | nn.LSTM | nn.GRU]:
    """The torch recurrent module called ``name`` (one of ``CELLS``)."""
    if name not in CELLS:
        raise ConfigError(f"unknown cell {name!r}; valid cells: {', '.join(CELLS)}")
    cls: type[nn.RNN | nn.LSTM | nn.GRU] = getattr(nn, name)
    return cls


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and usage of one forecaster.

    ``mode`` says how it is trained and served: ``ar`` reads the last
    ``window`` rows from a zero state; ``latent`` carries its state over the
    whole history (``window`` is then unused at inference).

    ``scaling`` says how returns are put on a common scale: ``global`` by the
    training returns' std (the scaler's), ``volatility`` by each stream's own
    causal EWMA volatility, carried in its state: its variance starts at the
    training variance, weighing as ``variance_prior`` returns, and moves from
    a running mean of squared returns to v_t = decay * v_{t-1} + (1 - decay) *
    r_t^2 as they grow (``models/volatility.py``), floored at
    ``variance_floor`` (in units of the training variance); inputs
    r_t / sqrt(v_{t-1}) are clipped to ``±input_clip``.

    A saved config must name its ``scaling``. One saved before
    ``variance_prior`` existed loads with the steady weight 1 / (1 - decay),
    the plain EWMA it was trained with (docs/retention.md: for how long).

    ``variance_source`` says what that variance reads each day: ``returns``
    the squared return; ``parkinson`` Parkinson's variance from the day's
    high-low range, about five times as efficient, for a model whose second
    feature is ``range`` (then read, like the returns, in units of the
    training returns' std and over the stream's volatility). A config saved
    without the field reads returns, as it was trained. ``range_or_returns``
    reads Parkinson's variance on a day whose high and low were sent and the
    squared return on one without (its range NaN): the range's variance times
    ``range_ratio``, the training span's mean squared return over its mean
    Parkinson variance (fit by training: the range misses the overnight move),
    so that both measure the same variance; the network reads the range where
    sent, 0 where not, and one derived column more, 1 where it was sent.

    ``variance_scales``: the decays of further EWMA variances of the same
    daily squared moves (e.g. 0.5, 0.8, 0.955: about a day, a week and a
    month), each with its own weight and the same prior, carried in the state
    beside the main one. The network reads 0.5 * log(v_k / v) of each before
    the day, as one more input column (``conv_inputs``). Empty (the default,
    and a config saved without the field): the main variance alone.
    ``quantile_scale`` ``mix`` learns the quantiles in units of sqrt(sum of
    a_k v_k) over the main variance and the scales', the weights a a softmax
    learnt with the network, in place of sqrt(v) (``main``, the default).
    """

    mode: str = "latent"
    cell: str = "GRU"
    n_features: int = 1
    conv_channels: int = 32
    conv_kernel: int = 5
    hidden_size: int = 64
    num_layers: int = 1
    dropout: float = 0.0
    horizon: int = 5
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    window: int = 60
    scaling: str = DEFAULT_SCALING
    ewma_decay: float = 0.94  # RiskMetrics' daily decay
    variance_floor: float = 1e-4
    variance_prior: float = 0.005  # pseudo-returns the training variance weighs as at a stream's start
    input_clip: float = 10.0
    variance_source: str = "returns"
    # range_or_returns: what a day's Parkinson variance is multiplied by. Fit by training on its data, not
    # chosen: left out of equality, so that a retrain's challenger is of its champion's configuration
    range_ratio: float = field(default=1.0, compare=False)
    variance_scales: tuple[float, ...] = ()
    quantile_scale: str = "main"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; valid modes: {', '.join(MODES)}")
        cell_class(self.cell)
        if self.scaling not in SCALINGS:
            raise ConfigError(f"unknown scaling {self.scaling!r}; valid scalings: {', '.join(SCALINGS)}")
        if self.variance_source not in VARIANCE_SOURCES:
            raise ConfigError(
                f"unknown variance_source {self.variance_source!r}; valid sources: {', '.join(VARIANCE_SOURCES)}"
            )
        if self.variance_source in RANGE_SOURCES and (self.scaling != "volatility" or self.n_features < 2):
            raise ConfigError(
                f"variance_source {self.variance_source!r} needs volatility scaling and the range as second "
                f"feature, got scaling {self.scaling!r} with {self.n_features} feature(s)"
            )
        if not 0.0 < self.ewma_decay < 1.0:
            raise ConfigError(f"ewma_decay must be in (0, 1), got {self.ewma_decay!r}")
        try:
            scales = tuple(float(d) for d in self.variance_scales)
        except (TypeError, ValueError):
            raise ConfigError(f"variance_scales must be a list of decays, got {self.variance_scales!r}") from None
        if scales and not self.volatility_scaled:
            raise ConfigError(f"variance_scales need volatility scaling, got scaling {self.scaling!r}")
        if any(not 0.0 < d < 1.0 for d in scales) or len(set(scales)) != len(scales):
            raise ConfigError(f"variance_scales must be distinct decays in (0, 1), got {list(self.variance_scales)}")
        object.__setattr__(self, "variance_scales", scales)
        if self.quantile_scale not in QUANTILE_SCALES or (self.quantile_scale == "mix" and not scales):
            raise ConfigError(
                f"quantile_scale must be one of {', '.join(QUANTILE_SCALES)} (mix needs variance_scales), "
                f"got {self.quantile_scale!r}"
            )
        if not self.variance_floor > 0 or not self.input_clip > 0 or not self.variance_prior > 0:
            raise ConfigError("variance_floor, variance_prior and input_clip must be positive")
        if not 0 < self.range_ratio < float("inf"):
            raise ConfigError(f"range_ratio must be positive and finite, got {self.range_ratio!r}")
        for name in ("n_features", "conv_channels", "conv_kernel", "hidden_size", "num_layers", "horizon", "window"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        qs = tuple(float(q) for q in self.quantiles)
        if not qs or any(not 0.0 < q < 1.0 for q in qs) or list(qs) != sorted(set(qs)):
            raise ConfigError(f"quantiles must be increasing, distinct and in (0, 1), got {list(self.quantiles)}")
        if 0.5 not in qs:
            raise ConfigError(f"quantiles must include the median 0.5, got {list(qs)}")
        object.__setattr__(self, "quantiles", qs)

    @property
    def volatility_scaled(self) -> bool:
        return self.scaling == "volatility"

    @property
    def raw_columns(self) -> int:
        """Leading input columns left in return units for the model to scale: the returns (and the range)."""
        if not self.volatility_scaled:
            return 0
        return 2 if self.variance_source in RANGE_SOURCES else 1

    @property
    def ranges_optional(self) -> bool:
        """Whether an observation may come without its high and low (``range_or_returns``)."""
        return self.variance_source == "range_or_returns"

    @property
    def derived_columns(self) -> int:
        """Columns the model derives from its inputs for the conv: whether the day's range was sent, then one
        per variance scale."""
        return (1 if self.ranges_optional else 0) + len(self.variance_scales)

    @property
    def conv_inputs(self) -> int:
        """The conv's input width (and its carried columns): the features, then the derived columns."""
        return self.n_features + self.derived_columns

    @property
    def median_index(self) -> int:
        return self.quantiles.index(0.5)

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["quantiles"] = list(self.quantiles)
        raw["variance_scales"] = list(self.variance_scales)
        return raw

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(f"unknown model config fields: {', '.join(unknown)}")
        if "scaling" not in raw:
            # saved before volatility scaling: two forms of the config ago, no longer read (docs/retention.md)
            raise ConfigError("model config has no scaling: it was saved by a build too old to read; retrain it")
        values = dict(raw)
        if "variance_prior" not in values:
            # saved before the variance carried its weight: its EWMA started at the steady weight
            values["variance_prior"] = 1.0 / (1.0 - values.get("ewma_decay", cls.ewma_decay))
        for name in ("quantiles", "variance_scales"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)
