"""``BundledPrices``: the bundled real prices as the API serves them, listed and sliced by date.

The page's replay (``docs/page.md``) and any client that wants real prices to
stream read them through ``GET /v1/data/tickers`` and ``GET /v1/data/prices``.
The prices come from ``data.sources.bundled`` (adjusted, validated), read once
per process and kept as plain lists: a slice is a bisection and a copy, with no
pandas on the request path.
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
from dataclasses import dataclass

import pandas as pd

from data import sources
from latentcast.errors import NotFoundError
from models.series import Observation

SOURCE = "bundled"


@dataclass(frozen=True)
class TickerSpan:
    """What one ticker offers: its trading days from ``first`` to ``last``."""

    ticker: str
    first: str
    last: str
    rows: int

    def to_dict(self) -> dict[str, str | int]:
        return {"ticker": self.ticker, "first": self.first, "last": self.last, "rows": self.rows}


@dataclass(frozen=True)
class PriceSlice:
    """``observations`` from the first trading day on or after a date, and the ``warmup`` days before it."""

    ticker: str
    warmup: list[Observation]
    observations: list[Observation]


class BundledPrices:
    """The bundled prices, loaded on first use (thread-safe) and kept for the life of the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dates: dict[str, list[str]] = {}  # ticker -> ISO dates, ascending
        self._bars: dict[str, list[Observation]] = {}

    def tickers(self) -> list[TickerSpan]:
        """Every bundled ticker with its span, by name."""
        self._load()
        return [TickerSpan(t, dates[0], dates[-1], len(dates)) for t, dates in sorted(self._dates.items())]

    def prices(self, ticker: str, start: dt.date, count: int, warmup: int = 0) -> PriceSlice:
        """At most ``count`` bars of ``ticker`` from the first trading day on or after ``start``, and at
        most ``warmup`` bars before it (fewer where the data begins or ends).

        ``NotFoundError`` for an unknown ticker (naming the known ones) or a start after its last day.
        """
        self._load()
        key = ticker.upper()
        if key not in self._dates:
            raise NotFoundError(f"no bundled prices for {ticker!r}; bundled tickers: {', '.join(sorted(self._dates))}")
        dates = self._dates[key]
        begin = bisect.bisect_left(dates, start.isoformat())
        if begin == len(dates):
            raise NotFoundError(f"{key}: no prices on or after {start.isoformat()}; its last day is {dates[-1]}")
        bars = self._bars[key]
        return PriceSlice(key, bars[max(0, begin - warmup) : begin], bars[begin : begin + count])

    def _load(self) -> None:
        with self._lock:
            if self._dates:
                return
            frame = sources.bundled()
            for ticker, rows in frame.groupby("ticker", sort=True):
                self._dates[str(ticker)] = [d.date().isoformat() for d in rows["date"]]
                self._bars[str(ticker)] = bars_of(rows)


def bars_of(rows: pd.DataFrame) -> list[Observation]:
    """The rows of a tidy frame as observations, their dates as labels."""
    return [
        Observation(
            close=float(r["close"]),
            open=float(r["open"]),
            high=float(r["high"]),
            low=float(r["low"]),
            volume=float(r["volume"]),
            time=r["date"].date().isoformat(),
        )
        for r in rows.to_dict("records")
    ]
