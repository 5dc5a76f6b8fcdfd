"""Filling the yfinance price cache for a list of tickers: in chunks, resumable, with progress.

A ticker whose file is already in the cache is skipped, so a fetch that
stopped (network, Ctrl-C) resumes where it was when run again. Each chunk is
one download; a chunk that fails is logged and reported, and the rest go on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from data.sources import Downloader, PriceCache, download_yfinance
from latentcast.errors import DataError

logger = logging.getLogger(__name__)

DEFAULT_CHUNK = 50  # tickers per download: few requests, and a failure loses little


@dataclass
class FetchReport:
    """Which tickers a fetch downloaded, found already cached, or could not get (with why)."""

    fetched: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def read_tickers(path: str | os.PathLike[str]) -> list[str]:
    """Tickers of a file, one a line, upper-cased; blank lines and ``#`` comments are skipped, duplicates once."""
    file = Path(path)
    try:
        lines = file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{file}: cannot read the tickers file ({exc})") from exc
    tickers: list[str] = []
    for number, line in enumerate(lines, start=1):
        ticker = line.split("#", 1)[0].strip().upper()
        if not ticker:
            continue
        if any(c.isspace() or c == "," for c in ticker):
            raise DataError(f"{file}: line {number}: one ticker a line, got {line.strip()!r}")
        if ticker not in tickers:
            tickers.append(ticker)
    if not tickers:
        raise DataError(f"{file}: no tickers in this file")
    return tickers


def fill_cache(
    tickers: Sequence[str],
    cache: PriceCache,
    *,
    download: Downloader = download_yfinance,
    chunk: int = DEFAULT_CHUNK,
    start: str | None = None,
    progress: bool = True,
) -> FetchReport:
    """Download every ticker not yet in ``cache``, ``chunk`` at a time, and save each chunk as it arrives."""
    if chunk < 1:
        raise DataError(f"chunk must be a positive integer, got {chunk!r}")
    report = FetchReport(cached=[t for t in tickers if cache.path(t).is_file()])
    missing = [t for t in tickers if t not in report.cached]
    chunks = [missing[i : i + chunk] for i in range(0, len(missing), chunk)]
    with tqdm(total=len(missing), desc="fetch", unit="ticker", disable=not progress) as bar:
        for part in chunks:
            try:
                frame = download(part, start, None)
            except Exception as exc:  # one chunk's failure (network, a delisted ticker) must not stop the rest
                reason = f"{type(exc).__name__}: {exc}"
                logger.warning("download of %s failed: %s", ", ".join(part), reason)
                report.failed.update(dict.fromkeys(part, reason))
            else:
                cache.save(frame)
                report.fetched += part
            bar.update(len(part))
    return report
