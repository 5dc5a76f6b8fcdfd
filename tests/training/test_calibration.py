"""The calibration report: every method, ticker, horizon and return multiplier, and tests against GARCH."""

from __future__ import annotations

import json

import pytest

from data import sources
from tests.factories import tiny_config
from training.calibration import METHODS, TESTED, CalibrationConfig, calibration_report, write_calibration_report
from training.config import TrainConfig
from training.significance import DieboldMariano

FAST = TrainConfig(epochs=1, streams=4, bptt=25, threads=1, progress=False)


@pytest.fixture(scope="module")
def report():
    prices = sources.load("bundled", tickers=["IBM", "MSFT"], start="2008-01-01")
    config = CalibrationConfig(scales=(1.0, 3.0))
    return calibration_report(prices, tiny_config(horizon=2), FAST, ("returns",), config)


def test_every_method_is_scored_and_the_conformal_ones_tested_against_garch(report):
    assert list(report["scores"]) == ["1", "3"] and report["adaptive_rate"] == CalibrationConfig.adaptive_rate
    for k in ("1", "3"):
        assert list(report["scores"][k]) == list(METHODS)
        for scores in report["scores"][k].values():
            assert list(scores) == ["IBM", "MSFT", "pooled"]
        assert list(report["against_garch"][k]) == list(TESTED)
        for by_horizon in report["against_garch"][k].values():
            assert list(by_horizon) == ["h1", "h2"]
            assert all(0 <= DieboldMariano(**t).p_value <= 1 for t in by_horizon.values())
    # the adaptive offsets move the split-conformal forecasts: other bands
    pooled = {m: report["scores"]["1"][m]["pooled"]["h1"]["coverage"] for m in TESTED}
    assert pooled["volatility_conformal"] != pooled["volatility_adaptive"]


def test_the_markdown_shows_the_adaptive_column_and_the_verdicts(report, tmp_path):
    paths = write_calibration_report(report, tmp_path, "latentcast calibration --epochs 1")
    assert [p.name for p in paths] == [
        "calibration.md",
        "calibration.json",
        "calibration_coverage.png",
        "calibration_age.png",
    ]
    assert json.loads((tmp_path / "calibration.json").read_text()) == json.loads(json.dumps(report))
    text = (tmp_path / "calibration.md").read_text()
    assert "Made by `latentcast calibration --epochs 1`." in text
    assert text.count("| volatility scaling + conformal + adaptive |") == 2 * 2 * 2 + 1  # per table, and the summary
    result = DieboldMariano(**report["against_garch"]["3"]["volatility_adaptive"]["h2"])
    label = "volatility scaling + conformal + adaptive"
    assert f"- {label}: statistic {result.statistic:.3f} over {result.n} days; " in text
    assert result.verdict(label, "GARCH(1,1)-t") in text


def test_sessions_are_scored_by_age_on_every_copy_against_the_warmed_forecasts_of_the_same_days(report, tmp_path):
    assert list(report["by_age"]) == ["1", "3"]
    for by_serving in report["by_age"].values():
        assert list(by_serving) == ["conformal", "adaptive"]
        for by_horizon in by_serving.values():
            assert list(by_horizon) == ["h1", "h2"]
            for buckets in by_horizon.values():
                assert list(buckets) == ["1-5", "6-20", "21-60", "61+"]
                assert all(b["n"] > 0 and 0 <= b["coverage"] <= 1 for b in buckets.values())
    # old sessions are warmed ones: the same forecasts as the warmed model's, bucket 61+ scores them alike
    old = report["by_age"]["1"]["conformal"]["h1"]["61+"]
    assert old["pinball"] == pytest.approx(old["warmed_pinball"], rel=0.02)
    write_calibration_report(report, tmp_path, "latentcast calibration")
    text = (tmp_path / "calibration.md").read_text()
    assert "## Sessions by age" in text and "![coverage by age](calibration_age.png)" in text
    assert text.count("| x3 | ") == 2 * 2  # a row per way of serving and horizon
