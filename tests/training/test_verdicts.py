from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from latentcast.errors import DataError
from training.significance import DieboldMariano
from training.verdicts import block_size, confidence_set, holm, pair_verdict, seed_differences


def test_holm_by_hand():
    # sorted 0.01, 0.02, 0.04 times 3, 2, 1, then made monotone: 0.03, 0.04, 0.04
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([]) == []


def test_the_confidence_set_drops_a_clearly_worse_method_and_keeps_the_equals():
    rng = np.random.default_rng(0)
    base = rng.random(400)
    losses = pd.DataFrame(
        {
            "good": base + 0.02 * rng.standard_normal(400),
            "twin": base + 0.02 * rng.standard_normal(400),
            "bad": base + 0.3 + 0.02 * rng.standard_normal(400),
        }
    )
    result = confidence_set(losses, horizon=1)
    assert set(result.included) == {"good", "twin"} and result.p_values["bad"] < 0.1
    assert (result.days, result.block_size, result.size) == (400, 20, 0.1)
    assert confidence_set(losses, horizon=1).p_values == result.p_values  # seeded: the same set every time


def test_the_confidence_set_refuses_too_little():
    with pytest.raises(DataError) as err:
        confidence_set(pd.DataFrame({"a": [1.0, 2.0]}), horizon=1)
    assert str(err.value) == "a model confidence set needs at least two methods, got 1"
    assert block_size(25, 10) == 10 and block_size(400, 1) == 20


def test_seed_differences_pair_seeds_and_a_single_run_with_every_seed():
    days = pd.to_datetime(["2020-01-02", "2020-01-03"])
    a = [pd.Series([1.0, 2.0], index=days), pd.Series([3.0, 3.0], index=days)]
    b = [pd.Series([1.0, 1.0], index=days)]
    assert seed_differences(a, b) == [0.5, 2.0]
    assert seed_differences(a, a) == [0.0, 0.0]
    with pytest.raises(DataError, match="seeds do not pair: 2 runs against 3"):
        seed_differences(a, [*a, a[0]])


def result(mean: float, p: float) -> DieboldMariano:
    return DieboldMariano(statistic=-3.0 if mean < 0 else 3.0, p_value=p, mean_difference=mean, n=300, lags=0)


def test_a_verdict_needs_the_adjusted_p_and_most_seeds():
    assert pair_verdict(result(-0.1, 0.001), 0.004, [-0.1, -0.2, 0.1], "latent", "ar") == (
        "latent has a significantly lower loss than ar "
        "(Holm-adjusted p = 0.004, raw 0.001; latent lower in 2 of 3 seeds)"
    )
    assert pair_verdict(result(0.1, 0.001), 0.004, [0.1, -0.2, -0.1], "latent", "ar") == (
        "no verdict: ar's loss is lower on the mean over seeds but not in most seeds "
        "(Holm-adjusted p = 0.004, raw 0.001; ar lower in 1 of 3 seeds)"
    )
    assert pair_verdict(result(-0.1, 0.01), 0.08, [-0.1], "latent", "GARCH") == (
        "no significant difference between latent and GARCH (Holm-adjusted p = 0.08, raw 0.01)"
    )
    # every verdict over seeds gives their spread, called or not
    assert pair_verdict(result(-0.1, 0.01), 0.08, [-0.1, 0.2, -0.3], "latent", "ar") == (
        "no significant difference between latent and ar "
        "(Holm-adjusted p = 0.08, raw 0.01; latent lower in 2 of 3 seeds)"
    )


def test_methods_of_identical_losses_share_one_p_value():
    rng = np.random.default_rng(1)
    base = rng.random(300)
    losses = pd.DataFrame({"a": base, "copy": base.copy(), "worse": base + 0.5})
    result = confidence_set(losses, horizon=2)
    assert result.included == ["a", "copy"] and result.p_values["a"] == result.p_values["copy"] == 1.0
    alone = confidence_set(losses[["a", "copy"]], horizon=2)
    assert alone.included == ["a", "copy"] and alone.p_values == {"a": 1.0, "copy": 1.0}
