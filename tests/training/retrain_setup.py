"""The retrain jobs the retrain tests run: on bundled prices, or on a CSV of them up to a date, with tiny models."""

from __future__ import annotations

from pathlib import Path

from data import sources
from tests.factories import tiny_config
from training.config import TrainConfig
from training.retrain import RetrainConfig

FAST = TrainConfig(epochs=2, streams=4, bptt=25, batch_size=32, windows_per_epoch=128, threads=1, progress=False)
ROOT = Path(__file__).resolve().parents[2]


HOLDOUT = 60
OLDER = "2012-06-29"  # prices of a first run, so that a second run on the bundled ones has news


def config(tmp_path, **fields) -> RetrainConfig:
    values = {
        "artifacts": tmp_path,
        "tickers": ("IBM", "MSFT"),
        "source": "bundled",
        "history_years": 6,
        "holdout_days": HOLDOUT,
        "model": tiny_config(),
        "train": FAST,
    }
    values.update(fields)
    return RetrainConfig(**values)


def until(tmp_path, end: str, **fields) -> RetrainConfig:
    """A retrain on the bundled IBM and MSFT prices up to ``end`` (a CSV file of them)."""
    path = tmp_path / f"prices-{end}.csv"
    prices = sources.bundled(["IBM", "MSFT"])
    prices[prices["date"] <= end].to_csv(path, index=False)
    return config(tmp_path, source="csv", path=str(path), **fields)


def trading_days(end: str) -> list[str]:
    dates = sources.bundled(["IBM", "MSFT"])["date"]
    return sorted({d.date().isoformat() for d in dates[dates <= end]})
