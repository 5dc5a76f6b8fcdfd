"""Where prices come from: bundled real data, CSV files, and yfinance.

Every source returns the tidy frame of ``data.prices`` (columns ``COLUMNS``,
adjusted, sorted by ticker then date) or raises ``DataError``.

- ``bundled``: daily prices of AAPL, IBM, MSFT (2000-2013) and GOOG (2004-2013)
  from the Quandl WIKI dataset, shipped in the package (see NOTICE).
- ``csv``: a file or a folder of ``*.csv`` / ``*.csv.gz`` files;
- ``parquet``: a file or a folder of ``*.parquet`` files (``data.folder``
  reads both kinds, one file or one ticker at a time).
- ``yfinance``: a live download, cached on disk per ticker; ``fetch_fresh``
  falls back to that cache, then to the bundled data, when the network fails.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from data.files import replaced_whole
from data.folder import SUFFIXES, read_prices
from data.prices import tidy
from latentcast.errors import DataError

logger = logging.getLogger(__name__)

SOURCES = ("bundled", "csv", "parquet", "yfinance")
BUNDLED_FILE = "stocks.csv.gz"
YFINANCE_TIMEOUT_SECONDS = 20.0

Downloader = Callable[[Sequence[str], str | None, str | None], pd.DataFrame]


def load(
    source: str = "bundled",
    *,
    tickers: Iterable[str] | None = None,
    path: str | os.PathLike[str] | None = None,
    start: str | None = None,
    end: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> pd.DataFrame:
    """Load prices from ``source`` (one of ``SOURCES``) as a tidy frame.

    ``path`` is required for ``csv`` and ``parquet``; ``tickers`` for ``yfinance``, whose
    download is cached in ``cache_dir`` when given. ``start``/``end`` (ISO
    dates, end exclusive) trim any source.
    """
    wanted = _upper(tickers)
    if source == "bundled":
        frame = bundled(wanted)
    elif source in SUFFIXES:
        if path is None:
            raise DataError(f"source {source!r} needs a path to a file or folder")
        frame = read_prices(path, source, wanted)
    elif source == "yfinance":
        if not wanted:
            raise DataError("source 'yfinance' needs at least one ticker")
        frame = download_yfinance(wanted, start, end)
        if cache_dir is not None:
            PriceCache(cache_dir).save(frame)
    else:
        raise DataError(f"unknown source {source!r}; valid sources: {', '.join(SOURCES)}")
    return between(frame, start, end)


def bundled(tickers: Sequence[str] | None = None) -> pd.DataFrame:
    """The bundled real prices, optionally only some tickers."""
    with resources.files("data").joinpath("bundled", BUNDLED_FILE).open("rb") as handle:
        raw = pd.read_csv(handle, compression="gzip", dtype={"Ticker": str, "Date": str})
    frame = tidy(raw, "bundled")
    return select(frame, tickers, "bundled")


def select(frame: pd.DataFrame, tickers: Sequence[str] | None, origin: str) -> pd.DataFrame:
    """Keep only ``tickers`` (all when None); an unknown ticker is an error."""
    if not tickers:
        return frame
    available = sorted(frame["ticker"].unique())
    unknown = [t for t in tickers if t not in available]
    if unknown:
        raise DataError(f"{origin}: no prices for {', '.join(unknown)}; available: {', '.join(available)}")
    return frame[frame["ticker"].isin(list(tickers))].reset_index(drop=True)


def between(frame: pd.DataFrame, start: str | None, end: str | None) -> pd.DataFrame:
    """Rows with ``start <= date < end`` (either bound optional)."""
    mask = pd.Series(True, index=frame.index)
    if start is not None:
        mask &= frame["date"] >= pd.Timestamp(start)
    if end is not None:
        mask &= frame["date"] < pd.Timestamp(end)
    if not mask.any():
        raise DataError(f"no prices between {start or 'the start'} and {end or 'the end'}")
    return frame[mask].reset_index(drop=True)


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows, first and last date per ticker."""
    grouped = frame.groupby("ticker")["date"]
    return pd.DataFrame({"rows": grouped.size(), "first": grouped.min().dt.date, "last": grouped.max().dt.date})


# yfinance ------------------------------------------------------------------


def download_yfinance(tickers: Sequence[str], start: str | None = None, end: str | None = None) -> pd.DataFrame:
    """Download daily bars from Yahoo Finance with yfinance 1.x (network)."""
    import yfinance as yf

    span = {"start": start, "end": end} if start is not None else {"period": "max", "end": end}
    raw = yf.download(
        list(tickers),
        **span,
        interval="1d",
        auto_adjust=False,
        actions=False,
        progress=False,
        threads=False,
        group_by="column",
        multi_level_index=True,
        timeout=YFINANCE_TIMEOUT_SECONDS,
    )
    return from_yfinance_frame(raw, tickers)


def from_yfinance_frame(raw: pd.DataFrame | None, tickers: Sequence[str]) -> pd.DataFrame:
    """Turn yfinance's wide frame into the tidy frame.

    yfinance 1.x returns a ``Date`` index and MultiIndex columns
    ``(Price, Ticker)`` such as ``("Adj Close", "MSFT")``; days on which a
    ticker did not trade are all-NaN for it (the frame is an outer join).
    """
    if raw is None or raw.empty:
        raise DataError(f"yfinance returned no data for {', '.join(tickers)}")
    if not isinstance(raw.columns, pd.MultiIndex):
        if len(tickers) != 1:
            raise DataError("yfinance returned flat columns for several tickers")
        raw = pd.concat({tickers[0]: raw}, axis=1, names=["Ticker", "Price"]).swaplevel(0, 1, axis=1)
    names = [str(n) for n in raw.columns.names]
    ticker_level = names.index("Ticker") if "Ticker" in names else 1
    long = raw.stack(level=ticker_level).rename_axis(["date", "ticker"]).reset_index()
    long = long.dropna(subset=[c for c in long.columns if str(c).lower() == "close"], how="all")
    found = set(long["ticker"].astype(str).str.upper())
    missing = [t for t in tickers if t.upper() not in found]
    if missing:
        raise DataError(f"yfinance returned no rows for {', '.join(missing)}")
    long = long[long["ticker"].astype(str).str.upper().isin([t.upper() for t in tickers])]
    long = long.sort_values(["ticker", "date"], kind="stable").reset_index(drop=True)
    return tidy(long, "yfinance")


class PriceCache:
    """Tidy prices cached on disk, one gzipped CSV per ticker.

    Files are replaced by atomic rename, so a crash never leaves half a file.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path(self, ticker: str) -> Path:
        return self.directory / f"{ticker.upper()}.csv.gz"

    def save(self, frame: pd.DataFrame) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for ticker, rows in frame.groupby("ticker"):
            target = self.path(str(ticker))
            out = rows.assign(date=rows["date"].dt.strftime("%Y-%m-%d"))
            with replaced_whole(target) as handle:
                out.to_csv(handle, index=False, compression="gzip")

    def load(self, tickers: Sequence[str]) -> pd.DataFrame:
        missing = [t for t in tickers if not self.path(t).is_file()]
        if missing:
            raise DataError(f"{self.directory}: no cached prices for {', '.join(missing)}")
        frames = []
        for ticker in tickers:
            raw = pd.read_csv(self.path(ticker), dtype={"ticker": str, "date": str})
            frames.append(tidy(raw, str(self.path(ticker))))
        return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class FreshPrices:
    """Prices for a retrain and where they came from."""

    frame: pd.DataFrame
    source: str  # "yfinance", "cache" or "bundled"
    reason: str  # why this source was used, for the job report


def fetch_fresh(
    tickers: Sequence[str],
    cache_dir: str | os.PathLike[str],
    *,
    download: Downloader = download_yfinance,
    start: str | None = None,
) -> FreshPrices:
    """Newest prices for ``tickers``: yfinance, else the disk cache, else bundled.

    A successful download refreshes the cache. Each fallback is logged with
    the error that caused it and recorded in ``reason``.
    """
    wanted = _upper(tickers)
    cache = PriceCache(cache_dir)
    try:
        frame = download(wanted, start, None)
    except Exception as exc:  # any network or parsing failure falls back
        download_error = f"yfinance failed: {type(exc).__name__}: {exc}"
        logger.warning("%s; trying the cache in %s", download_error, cache.directory)
    else:
        cache.save(frame)
        return FreshPrices(frame, "yfinance", f"downloaded {len(frame)} rows")
    try:
        frame = cache.load(wanted)
    except DataError as exc:
        cache_error = str(exc)
        logger.warning("%s; using the bundled prices", cache_error)
    else:
        return FreshPrices(frame, "cache", f"{download_error}; used the cache")
    frame = bundled()
    have = [t for t in wanted if t in set(frame["ticker"])]
    note = f"{download_error}; {cache_error}; used the bundled prices"
    if have:
        return FreshPrices(select(frame, have, "bundled"), "bundled", note)
    return FreshPrices(frame, "bundled", f"{note} (none of {', '.join(wanted)} is bundled: all bundled tickers)")


def _upper(tickers: Iterable[str] | None) -> list[str]:
    return [t.strip().upper() for t in tickers or () if t.strip()]


def price_span(prices: pd.DataFrame) -> dict[str, Any]:
    """The tickers, rows and first and last days of ``prices``, as a job report gives them."""
    return {
        "tickers": sorted(prices["ticker"].unique().tolist()),
        "rows": len(prices),
        "first": prices["date"].min().date().isoformat(),
        "last": prices["date"].max().date().isoformat(),
    }
