"""How a backtest names its methods beside the baselines: a mode, and what its training or reading changed.

``latent`` is the latent model as configured; ``latent_global`` the same
trained with the other scaling ``global``; ``latent_unpretrained`` without the
others' pretraining; ``latent_unranged`` the configured model read with every
range not sent (a session of closes only); ``latent_closes`` a model of
closes (returns alone, its variance the squared returns) trained beside it.
Reports name them by ``label``.
"""

from __future__ import annotations

from training.report import LABELS

UNPRETRAINED = "unpretrained"  # the suffix of a model trained without the others' pretraining
UNRANGED = "unranged"  # the suffix of the model read without ranges
CLOSES = "closes"  # the suffix of a model of closes trained beside one that reads ranges
SUFFIXES = {UNPRETRAINED: "not pretrained", UNRANGED: "ranges not sent", CLOSES: "model of closes"}


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
