from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from data import sources
from data.features import build_series
from latentcast.errors import ConfigError
from models.calibration import apply_offsets
from models.checkpoint import build_from_checkpoint
from tests.factories import tiny_checkpoint, tiny_config
from training.compare import (
    TESTS,
    baseline_spans,
    compare,
    load_contender,
    significance,
    train_contenders,
    write_report,
)
from training.config import TrainConfig
from training.conformal import fit_offsets
from training.dataset import TrainingData
from training.evaluate import model_forecasts
from training.har import series_ranges
from training.metrics import pinball
from training.pipeline import train_and_register
from training.registry import Registry
from training.report import verdict
from training.scoring import pooled, score_by_ticker
from training.significance import SIGNIFICANCE

FAST = TrainConfig(epochs=2, streams=4, bptt=25, batch_size=32, windows_per_epoch=128, threads=1, progress=False)
METHODS = {
    "latent",
    "ar",
    "random_walk",
    "previous_return",
    "linear_ar",
    "garch_t",
    "riskmetrics_normal",
    "riskmetrics_t",
    "har_range",  # the bundled prices carry every day's high and low
}


@pytest.fixture(scope="module")
def prices():
    return sources.load("bundled", tickers=["AAPL", "IBM"], start="2003-01-01", end="2008-01-01")


@pytest.fixture(scope="module")
def report(prices, tmp_path_factory):
    data = TrainingData.prepare(prices, ("returns",), horizon=3)
    contenders = train_contenders(data, tiny_config(), FAST)
    comparison = compare(data, contenders, "bundled", prices, cost_lengths=(30, 300))
    out = tmp_path_factory.mktemp("compare")
    paths = write_report(comparison, out, plot_ticker="IBM")
    return out, paths, json.loads((out / "report.json").read_text())


def test_report_holds_every_method_ticker_and_horizon(report):
    _out, paths, payload = report
    assert sorted(p.name for p in paths) == sorted(
        ["report.json", "report.md", "forecast_vs_actual.png", "cumulative_abs_error.png", "cost_per_forecast.png"]
    )
    assert set(payload["metrics"]) == METHODS
    for method, by_ticker in payload["metrics"].items():
        assert set(by_ticker) == {"AAPL", "IBM", "pooled"}, method
        assert set(by_ticker["pooled"]) == {"h1", "h3"}
    rw = payload["metrics"]["random_walk"]["pooled"]["h1"]
    assert rw["mae_ratio"] == pytest.approx(1.0)
    assert payload["metrics"]["previous_return"]["pooled"]["h1"]["pinball"] is None
    assert payload["data"]["tickers"] == ["AAPL", "IBM"]
    assert {c["method"] for c in payload["cost_per_forecast_us"]} == {
        "latent_step",
        "latent_torch",
        "ar_window",
        "full_rerun",
    }


def test_closes_only_prices_leave_har_range_out(prices):
    closes_only = prices.assign(high=np.nan, low=np.nan)
    data = TrainingData.prepare(closes_only, ("returns",), horizon=3)
    spans = baseline_spans(data, np.asarray(LEVELS), series_ranges(closes_only, data.series))
    assert set(spans) == METHODS - {"latent", "ar", "har_range"}


def test_the_report_carries_every_test_at_horizon_1_and_h(report):
    _, _, payload = report
    tests = payload["diebold_mariano"]
    assert [(t["horizon"], t["loss"], t["a"], t["b"]) for t in tests] == [(h, *pair) for h in (1, 3) for pair in TESTS]
    for t in tests:
        assert 0.0 <= t["p_value"] <= 1.0 and t["n"] > 100, t
        assert t["lags"] == t["horizon"] - 1
        assert t["p_value"] <= t["adjusted_p"] <= 1.0
        assert ("significantly" in t["verdict"]) == (t["adjusted_p"] < SIGNIFICANCE), t
    assert payload["significance_level"] == SIGNIFICANCE
    assert [m["horizon"] for m in payload["confidence_sets"]] == [1, 3]
    banded = {"latent", "ar", "garch_t", "random_walk", "riskmetrics_normal", "riskmetrics_t", "har_range"}
    assert all(set(m["p_values"]) == banded for m in payload["confidence_sets"])
    assert payload["view"].startswith("one fold of the backtest's machinery")


def test_every_method_is_scored_on_the_same_forecasts(report):
    _, _, payload = report
    counts = {m: payload["metrics"][m]["pooled"]["h1"]["count"] for m in METHODS}
    assert len(set(counts.values())) == 1, counts


def test_markdown_has_the_verdict_tables_and_plots(report):
    out, _, payload = report
    text = (out / "report.md").read_text()
    assert "## Verdict" in text and "## One day ahead, all tickers pooled" in text
    assert "## IBM, 3 days ahead" in text
    assert "| GARCH(1,1)-t |" in text and "| random walk, 20-day vol |" in text
    assert "![cost_per_forecast](cost_per_forecast.png)" in text
    for line in verdict(payload["metrics"], payload["diebold_mariano"], "h1", payload["significance_level"]):
        assert line in text
    assert "## Diebold-Mariano tests (negative: a's loss is lower)" in text
    assert "| 3 | pinball | latent (model) | GARCH(1,1)-t |" in text
    for png in ("forecast_vs_actual.png", "cumulative_abs_error.png", "cost_per_forecast.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_registered_version_can_stand_in_for_training(prices, tmp_path):
    registry = Registry(tmp_path)
    version = train_and_register(registry, prices, "bundled", tiny_config("ar"), FAST)
    contender = load_contender(registry, version.version)
    assert contender.mode == "ar" and contender.version == version.version
    data = TrainingData.prepare(prices, ("returns",), horizon=3)
    [latent] = train_contenders(data, tiny_config(), FAST, modes=["latent"])
    comparison = compare(data, [latent, contender], "bundled", prices, cost_lengths=(30,))
    assert comparison.contenders["ar"]["version"] == version.version
    assert comparison.metrics["ar"]["pooled"]["h1"]["count"] == comparison.metrics["latent"]["pooled"]["h1"]["count"]


def test_each_version_is_scored_at_its_own_quantile_levels(prices, tmp_path):
    registry = Registry(tmp_path)
    older = prices[prices["date"] < "2006-01-01"]  # read nothing of the comparison's test span
    ar = train_and_register(registry, older, "bundled", tiny_config("ar", quantiles=(0.05, 0.5, 0.95)), FAST)
    latent = train_and_register(registry, older, "bundled", tiny_config(quantiles=(0.25, 0.5, 0.75)), FAST)
    data = TrainingData.prepare(prices, ("returns",), horizon=3)
    contenders = [load_contender(registry, latent.version), load_contender(registry, ar.version)]
    comparison = compare(data, contenders, "bundled", prices, cost_lengths=(30,))
    assert comparison.contenders["ar"]["coverage_band"] == [0.05, 0.95]
    assert comparison.contenders["latent"]["coverage_band"] == [0.25, 0.75]
    for mode, levels in (("ar", (0.05, 0.5, 0.95)), ("latent", (0.25, 0.5, 0.75))):
        forecasts = pooled(comparison.spans[mode])
        assert forecasts.quantiles is not None
        y, q = forecasts.actual[:, 0], forecasts.quantiles[:, 0]
        known = np.isfinite(y)
        scored = comparison.metrics[mode]["pooled"]["h1"]
        assert scored["pinball"] == pytest.approx(pinball(y, q, np.asarray(levels)))
        inside = (q[known, 0] <= y[known]) & (y[known] <= q[known, -1])
        assert scored["coverage"] == pytest.approx(inside.mean())
    assert comparison.levels == [0.25, 0.5, 0.75]  # the baselines take the latent model's levels


def test_a_version_that_read_the_test_span_is_refused(prices, tmp_path):
    registry = Registry(tmp_path)
    later = sources.load("bundled", tickers=["AAPL", "IBM"], start="2003-01-01", end="2010-01-01")
    version = train_and_register(registry, later, "bundled", tiny_config("ar"), FAST)
    seen = version.data_span["seen_until"]
    data = TrainingData.prepare(prices, ("returns",), horizon=3)
    [latent] = train_contenders(data, tiny_config(), FAST, modes=["latent"])
    with pytest.raises(ConfigError) as err:
        compare(data, [latent, load_contender(registry, version.version)], "bundled", prices, cost_lengths=(30,))
    test_start = data.split.to_dict()["test_start"]
    assert str(err.value) == (
        f"version {version.version} read prices up to {seen} in training or validation, "
        f"inside the test span from {test_start}: it would be scored in sample; "
        "compare on data whose test span starts later, or train it on older data"
    )


def test_contenders_are_scored_with_their_conformal_offsets(prices, tmp_path):
    registry = Registry(tmp_path)
    made = tiny_checkpoint("ar", last="2005-12-30")
    made["offsets"] = [[-1.0, 0.0, 1.0]] * 3  # each outer quantile a half-width further out
    version = registry.register(made).version
    data = TrainingData.prepare(prices, ("returns",), horizon=3)
    [latent] = train_contenders(data, tiny_config(), FAST, modes=["latent"])
    np.testing.assert_array_equal(latent.offsets, fit_offsets(latent.model, data.scaler, data.series, data.split))
    comparison = compare(data, [latent, load_contender(registry, version)], "bundled", prices, cost_lengths=(30,))
    assert comparison.contenders["ar"]["offsets"] == made["offsets"]
    model, scaler = build_from_checkpoint(registry.load(version), version)
    series = build_series(prices, scaler.features, 3)
    bare = model_forecasts(model, scaler, series, [data.split.bounds(s)[1] for s in series])
    for span, plain in zip(comparison.spans["ar"], bare, strict=True):
        assert span.quantiles is not None and plain.quantiles is not None
        np.testing.assert_allclose(span.quantiles, apply_offsets(plain.quantiles, np.asarray(made["offsets"])))
    trained = model_forecasts(latent.model, data.scaler, data.series, [data.split.bounds(s)[1] for s in data.series])
    for span, plain in zip(comparison.spans["latent"], trained, strict=True):
        assert span.quantiles is not None and plain.quantiles is not None
        np.testing.assert_allclose(span.quantiles, apply_offsets(plain.quantiles, latent.offsets))


LEVELS = [0.1, 0.5, 0.9]


@pytest.fixture(scope="module")
def walk(prices) -> list:
    """The random walk's forecasts of the real test span: the yardstick the made-up contenders are held to."""
    data = TrainingData.prepare(prices, ("returns",), horizon=3)
    return baseline_spans(data, np.asarray(LEVELS))["random_walk"]


def contender(walk: list, shrink: float) -> list:
    """Forecasts ``shrink`` of the way from the realised return to the random walk's (0: perfect, 1: the walk)."""
    out = []
    for span in walk:
        truth = np.nan_to_num(span.actual)
        spread = span.quantiles - span.point[..., None]
        point = truth + shrink * (span.point - truth)
        out.append(replace(span, point=point, quantiles=point[..., None] + shrink * spread))
    return out


def judged(spans: dict) -> tuple[list[dict], list[str]]:
    tests, _ = significance(spans, dict.fromkeys(spans, LEVELS), [1])
    metrics = {m: score_by_ticker(s, LEVELS) for m, s in spans.items()}
    return tests, verdict(metrics, tests, "h1", SIGNIFICANCE)


def by_pair(tests: list[dict], loss: str, a: str, b: str) -> dict:
    return next(t for t in tests if (t["loss"], t["a"], t["b"]) == (loss, a, b))


def test_a_clearly_better_contender_gets_a_significant_verdict(walk):
    spans = {"latent": contender(walk, 0.5), "ar": walk, "random_walk": walk, "garch_t": walk}
    tests, lines = judged(spans)
    point = by_pair(tests, "absolute_error", "latent", "random_walk")
    assert point["adjusted_p"] < SIGNIFICANCE and point["statistic"] < 0
    assert point["verdict"].startswith("latent (model) has a significantly lower loss than random walk, 20-day vol")
    for other in ("ar", "garch_t", "random_walk"):
        assert by_pair(tests, "pinball", "latent", other)["adjusted_p"] < SIGNIFICANCE
    assert lines[0].startswith("**Point forecast, 1 day(s): the latent model beats the random walk** by ")
    assert f"DM statistic {point['statistic']:.3f}, Holm-adjusted p " in lines[0]


def test_identical_forecasts_get_no_significant_difference(walk):
    spans = {"latent": contender(walk, 1.0), "ar": walk, "random_walk": walk, "garch_t": walk}
    tests, lines = judged(spans)
    for t in tests:
        assert t["p_value"] == 1.0 and t["statistic"] == 0.0, t
        assert t["verdict"].startswith("no significant difference between"), t
    assert lines[0] == (
        "**Point forecast, 1 day(s): the latent model ties with the random walk.** Its MAE is 1.000x the random "
        "walk's, a difference the test does not find significant (DM statistic 0.000, Holm-adjusted p = 1.0000); "
        "its direction "
        f"is right {lines[0].split('right ')[1].split(' of')[0]} of the time. On daily stock returns the mean is "
        "nearly unpredictable: here the random walk is as good or better."
    )
    assert "Pinball loss, 1 day(s): no significant difference between latent (model) and ar (model)" in lines[3]


def test_verdict_says_so_when_the_random_walk_wins(walk):
    spans = {"latent": contender(walk, 2.0), "ar": walk, "random_walk": walk, "garch_t": walk}
    tests, lines = judged(spans)
    assert by_pair(tests, "absolute_error", "latent", "random_walk")["adjusted_p"] < SIGNIFICANCE
    assert lines[0].startswith(
        "**Point forecast, 1 day(s): the latent model does not beat the random walk.** Its MAE is "
    )
    assert "significantly higher (DM statistic " in lines[0]
    assert lines[0].endswith(
        "On daily stock returns the mean is nearly unpredictable: here the random walk is as good or better."
    )
    assert "random walk, 20-day vol has a significantly lower loss than latent (model)" in lines[-1]
