"""How a backtest names its methods beside the baselines (a mode, and what its training or reading changed),
and which pairs of them it tests.

``latent`` is the latent model as configured; ``latent_global`` the same
trained with the other scaling ``global``; ``latent_unpretrained`` without the
others' pretraining; ``latent_unranged`` the configured model read with every
range not sent (a session of closes only); ``latent_closes`` a model of
closes (returns alone, its variance the squared returns) trained beside it;
``latent_onevariance`` the configured model trained without its variance scales.
Reports name them by ``label``.
"""

from __future__ import annotations

from collections.abc import Sequence

from models.config import MODES
from training.report import LABELS
from training.significance import Loss

# HAR-range is among them where the prices carry every day's high and low (``training.har``)
BANDED_BASELINES = ("garch_t", "riskmetrics_t", "har_range", "riskmetrics_normal", "random_walk")
# each model against the other and every baseline with quantiles
OPPONENTS = {"latent": ("ar", *BANDED_BASELINES), "ar": BANDED_BASELINES}

UNPRETRAINED = "unpretrained"  # the suffix of a model trained without the others' pretraining
UNRANGED = "unranged"  # the suffix of the model read without ranges
CLOSES = "closes"  # the suffix of a model of closes trained beside one that reads ranges
ONE_VARIANCE = "onevariance"  # the suffix of a model trained without the others' variance scales
SUFFIXES = {
    UNPRETRAINED: "not pretrained",
    UNRANGED: "ranges not sent",
    CLOSES: "model of closes",
    ONE_VARIANCE: "no variance scales",
}


def scaled(mode: str, suffix: str) -> str:
    """The method name of ``mode`` trained with the other scaling ``suffix`` (``latent_global``), or of
    what another suffix says (``latent_unranged``)."""
    return f"{mode}_{suffix}"


def label(method: str) -> str:
    """How reports name a method: ``LABELS``'s, ``latent, global scaling`` for a scaled model, ``latent, not
    pretrained`` for an unpretrained one, and so on (``SUFFIXES``)."""
    if method in LABELS:
        return LABELS[method]
    mode, _, suffix = method.partition("_")
    return f"{mode}, {SUFFIXES[suffix]}" if suffix in SUFFIXES else f"{mode}, {suffix} scaling"


def pairs(
    scalings: Sequence[str], pretrained: bool = False, closes_only: bool = False, scales: bool = False
) -> list[tuple[Loss, str, str]]:
    """The pairs tested: each model against ``OPPONENTS``, each mode against itself with each other scaling,
    when the models are ``pretrained`` without pretraining, when they have variance ``scales`` without them,
    and with ``closes_only`` the model and the model read without ranges each against the model of closes."""
    out: list[tuple[Loss, str, str]] = [("pinball", a, b) for a, others in OPPONENTS.items() for b in others]
    out += [("pinball", m, scaled(m, s)) for s in scalings for m in MODES]
    out += [("pinball", a, scaled(m, CLOSES)) for m in MODES for a in (m, scaled(m, UNRANGED)) if closes_only]
    out += [("pinball", m, scaled(m, ONE_VARIANCE)) for m in MODES if scales]
    return out + [("pinball", m, scaled(m, UNPRETRAINED)) for m in MODES if pretrained]
