"""Verdicts over many methods at once: Holm-adjusted pairwise tests, the model confidence set, seeds that agree.

A report runs many Diebold-Mariano tests (several pairs, two horizons); read
one by one at 5%, some would call a difference by chance. Their p-values are
Holm-adjusted across the whole report (``holm``), and a pairwise verdict is
called only where the adjusted p-value is below ``SIGNIFICANCE`` and, when
the methods were trained with several seeds, the difference has the same
sign in most seeds (``pair_verdict``): a verdict that one lucky seed carries
is no verdict.

Beside the pairs, each horizon gets the model confidence set of Hansen, Lunde
and Nason at 10% (``confidence_set``, from ``arch.bootstrap.MCS``): the
methods that cannot be told from the best on the per-day losses, all
compared at once.

Holm (1979), Scand. J. Statist. 6(2); Hansen, Lunde and Nason (2011), Econometrica 79(2).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from arch.bootstrap import MCS
from statsmodels.stats.multitest import multipletests

from latentcast.errors import DataError
from training.evaluate import SpanForecasts
from training.significance import SIGNIFICANCE, DieboldMariano, Loss, diebold_mariano, origin_losses

MCS_SIZE = 0.10  # methods whose MCS p-value is above this stay in the set
MCS_REPS = 1000  # bootstrap replications
MCS_SEED = 0  # the bootstrap's seed: a report is reproducible


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of ``p_values`` (one family: the whole report)."""
    if not p_values:
        return []
    return [float(p) for p in multipletests(list(p_values), method="holm")[1]]


@dataclass(frozen=True)
class ConfidenceSet:
    """The model confidence set of one horizon: the methods kept at ``size``, and every method's MCS p-value."""

    horizon: int
    size: float
    block_size: int
    days: int
    included: list[str]
    p_values: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def block_size(days: int, horizon: int) -> int:
    """The bootstrap's mean block: sqrt(days) (arch's default), and never shorter than the forecasts overlap."""
    return max(horizon, round(math.sqrt(days)))


def confidence_set(
    losses: pd.DataFrame, horizon: int, size: float = MCS_SIZE, reps: int = MCS_REPS, seed: int = MCS_SEED
) -> ConfidenceSet:
    """The MCS of the methods in ``losses``'s columns: per-day losses (days x methods), the days all forecast."""
    complete = losses.dropna()
    if complete.shape[1] < 2:
        raise DataError(f"a model confidence set needs at least two methods, got {complete.shape[1]}")
    if len(complete) < 2 * horizon + 1:
        raise DataError(f"too few days for a model confidence set at horizon {horizon}: {len(complete)}")
    block = block_size(len(complete), horizon)
    # methods with identical losses (a twin) cannot be told apart: the bootstrap would divide 0 by 0
    twins: dict[str, str] = {}  # method -> the first method of identical losses
    for name in complete.columns:
        twins[str(name)] = next(str(o) for o in complete.columns if complete[o].equals(complete[name]))
    distinct = complete[[c for c in complete.columns if twins[str(c)] == str(c)]]
    if distinct.shape[1] == 1:
        kept = {twins[str(distinct.columns[0])]: 1.0}
    else:
        mcs = MCS(distinct, size=size, reps=reps, block_size=block, method="R", seed=seed)
        mcs.compute()
        kept = {str(name): float(p) for name, p in mcs.pvalues["Pvalue"].items()}
    p_values = {name: kept[twin] for name, twin in twins.items()}
    included = [name for name, p in p_values.items() if p > size]  # arch's rule: kept above the size
    return ConfidenceSet(horizon, size, block, len(complete), included, p_values)


def seed_differences(a: Sequence[pd.Series], b: Sequence[pd.Series]) -> list[float]:
    """Mean per-day loss difference a - b in each seed, over the days both forecast.

    ``a`` and ``b``: per-day losses, one series per seed; a method of one
    run (a baseline) is paired with every seed of the other.
    """
    if len(a) != len(b) and min(len(a), len(b)) != 1:
        raise DataError(f"seeds do not pair: {len(a)} runs against {len(b)}")
    count = max(len(a), len(b))
    out = []
    for i in range(count):
        left, right = a[i if len(a) > 1 else 0], b[i if len(b) > 1 else 0]
        both = pd.concat([left, right], axis=1, join="inner")
        out.append(float((both.iloc[:, 0] - both.iloc[:, 1]).mean()))
    return out


def pair_verdict(
    result: DieboldMariano,
    adjusted_p: float,
    differences: Sequence[float],
    a: str,
    b: str,
    level: float = SIGNIFICANCE,
) -> str:
    """A plain sentence: who has the lower loss, or why no difference is called.

    ``differences``: the mean difference a - b in each seed (one entry when
    neither method has seeds).
    """
    agree = sum(1 for d in differences if np.sign(d) == np.sign(result.mean_difference) and d != 0)
    p = f"Holm-adjusted p = {adjusted_p:.3g}, raw {result.p_value:.3g}"
    if adjusted_p >= level:
        below = sum(1 for d in differences if d < 0)
        seeds = f"; {a} lower in {below} of {len(differences)} seeds" if len(differences) > 1 else ""
        return f"no significant difference between {a} and {b} ({p}{seeds})"
    better, worse = (a, b) if result.mean_difference < 0 else (b, a)
    seeds = f"; {better} lower in {agree} of {len(differences)} seeds" if len(differences) > 1 else ""
    if len(differences) > 1 and 2 * agree <= len(differences):
        return f"no verdict: {better}'s loss is lower on the mean over seeds but not in most seeds ({p}{seeds})"
    return f"{better} has a significantly lower loss than {worse} ({p}{seeds})"


Runs = Mapping[str, Sequence[Sequence[SpanForecasts]]]  # method -> one list of per-ticker spans per seed


def judge(
    runs: Runs,
    levels: Mapping[str, Sequence[float]],
    horizons: Sequence[int],
    pairs: Sequence[tuple[Loss, str, str]],
    label: Callable[[str], str],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pairwise tests (Holm-adjusted across all of them) and, per horizon, the model confidence set.

    Every test reads the per-day losses averaged over seeds (and tickers); the
    seeds' own mean differences say whether the sign holds in most of them.
    The confidence set holds every method with quantiles, on the pinball loss
    at its own ``levels``. Pairs whose methods are missing (a failed method)
    are left out.
    """
    tests: list[dict[str, Any]] = []
    results: list[tuple[DieboldMariano, list[float]]] = []
    sets = []
    banded = [m for m, r in runs.items() if r and r[0] and r[0][0].quantiles is not None]
    for horizon in horizons:
        mean = {m: origin_losses(runs[m], levels[m], horizon) for m in banded}
        if len(mean) >= 2:
            sets.append(confidence_set(pd.concat(mean, axis=1, join="inner"), horizon).to_dict())
        for loss, a, b in pairs:
            if not runs.get(a) or not runs.get(b):
                continue
            per_seed = [[origin_losses([run], levels[m], horizon, loss) for run in runs[m]] for m in (a, b)]
            both = pd.concat(
                [origin_losses(runs[a], levels[a], horizon, loss), origin_losses(runs[b], levels[b], horizon, loss)],
                axis=1,
                join="inner",
            )
            result = diebold_mariano(both.iloc[:, 0].to_numpy(), both.iloc[:, 1].to_numpy(), horizon)
            differences = seed_differences(per_seed[0], per_seed[1])
            results.append((result, differences))
            tests.append({"horizon": horizon, "loss": loss, "a": a, "b": b, **result.to_dict(), "seeds": differences})
    for test, adjusted, (result, differences) in zip(tests, holm([t["p_value"] for t in tests]), results, strict=True):
        test["adjusted_p"] = adjusted
        test["verdict"] = pair_verdict(result, adjusted, differences, label(test["a"]), label(test["b"]))
    return tests, sets
