"""The retrain jobs the retrain tests run: on bundled prices, or on a CSV of them up to a date, with tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

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


def break_prices(path: Path, days: int, regimes: tuple[tuple[int, float], ...]) -> Path:
    """A CSV of two synthetic tickers whose daily log returns are AR(1) (noise 1%), their coefficient
    ``phi`` from business day ``start`` on for each ``(start, phi)`` of ``regimes`` (the first start 0):
    a model trained in one regime forecasts another (of the opposite sign) the wrong way round."""
    rng = np.random.default_rng(7)
    dates = pd.bdate_range("2004-01-05", periods=days)
    frames = []
    for ticker in ("AAA", "BBB"):
        returns = np.zeros(days)
        for t in range(1, days):
            phi = [coefficient for start, coefficient in regimes if start <= t][-1]
            returns[t] = phi * returns[t - 1] + 0.01 * rng.standard_normal()
        close = 100 * np.exp(np.cumsum(returns))
        frames.append(
            pd.DataFrame(
                {
                    "ticker": ticker,
                    "date": dates,
                    "open": close,
                    "high": close * 1.005,
                    "low": close * 0.995,
                    "close": close,
                    "adj_close": close,
                    "volume": 1e6,
                }
            )
        )
    pd.concat(frames).to_csv(path, index=False)
    return path
