from __future__ import annotations

import json

import numpy as np
import pytest

from data import sources
from data.errors import ConfigError
from data.features import build_series
from models.calibration import apply_offsets
from models.checkpoint import build_from_checkpoint
from tests.factories import tiny_checkpoint, tiny_config
from training.compare import compare, load_contender, train_contenders, write_report
from training.config import TrainConfig
from training.conformal import fit_offsets
from training.dataset import TrainingData
from training.evaluate import model_forecasts
from training.metrics import pinball
from training.pipeline import train_and_register
from training.registry import Registry
from training.report import verdict
from training.scoring import pooled

FAST = TrainConfig(epochs=2, streams=4, bptt=25, batch_size=32, windows_per_epoch=128, threads=1, progress=False)
METHODS = {"latent", "ar", "random_walk", "previous_return", "linear_ar", "garch_t"}


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
        "latent_session",
        "ar_window",
        "full_rerun",
    }


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
    for line in verdict(payload["metrics"], "h1"):
        assert line in text
    for png in ("forecast_vs_actual.png", "cumulative_abs_error.png", "cost_per_forecast.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def metrics_with(latent_ratio: float, latent_pinball: float) -> dict:
    def row(ratio, direction, pinball, coverage):
        return {"mae_ratio": ratio, "directional_accuracy": direction, "pinball": pinball, "coverage": coverage}

    pooled = {
        "latent": row(latent_ratio, 0.52, latent_pinball, 0.79),
        "ar": row(1.02, 0.49, 0.0060, 0.70),
        "random_walk": row(1.0, None, 0.0050, 0.78),
        "previous_return": row(1.4, 0.48, None, None),
        "linear_ar": row(1.01, 0.5, None, None),
        "garch_t": row(1.0, 0.51, 0.0049, 0.81),
    }
    return {m: {"pooled": {"h1": r}} for m, r in pooled.items()}


def test_verdict_says_so_when_the_random_walk_wins():
    lines = verdict(metrics_with(1.05, 0.0051), "h1")
    assert lines[0].startswith(
        "**Point forecast, 1 day(s): the latent model does not beat the random walk.** "
        "Its MAE is 1.050x the random walk's"
    )
    assert lines[1].startswith("**Point forecast, 1 day(s): the ar model does not beat the random walk.**")
    assert lines[2].startswith("**Quantiles, 1 day(s): GARCH(1,1)-t has the lowest pinball loss.**")
    assert lines[3] == (
        "The latent model's pinball loss is 2.0% higher than random walk, 20-day vol and 4.1% higher than GARCH(1,1)-t."
    )
    assert verdict(metrics_with(1.05, 0.00492), "h1")[3] == (
        "The latent model's pinball loss is 1.6% lower than random walk, 20-day vol "
        "and 0.4% higher than GARCH(1,1)-t (under 1%: too small to call)."
    )


def test_verdict_credits_a_model_that_wins():
    lines = verdict(metrics_with(0.95, 0.0040), "h1")
    assert lines[0] == (
        "**Point forecast, 1 day(s): the latent model beats the random walk** by 5.0% in MAE "
        "(ratio 0.950); direction right 52.0% of the time."
    )
    assert lines[2].startswith("**Quantiles, 1 day(s): latent (model) has the lowest pinball loss.**")
    assert verdict(metrics_with(0.995, 0.0040), "h1")[0] == (
        "**Point forecast, 1 day(s): the latent model ties with the random walk.** Its MAE is 0.995x the random "
        "walk's, less than 1% apart: too small a gain to call skill; its direction is right 52.0% of the time."
    )


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


def test_verdict_says_when_the_best_quantiles_lead_by_too_little_to_call():
    line = verdict(metrics_with(0.95, 0.00489), "h1")[2]
    assert line.startswith(
        "**Quantiles, 1 day(s): latent (model) has the lowest pinball loss.** "
        "It leads GARCH(1,1)-t by only 0.2%: too small to call."
    )


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
