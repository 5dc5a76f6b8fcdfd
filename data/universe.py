"""The series of a universe of tickers, one part of the prices at a time, through the feature cache.

Training reads ``Series`` (features and targets per ticker), not prices: from
files, each part (a file, or one ticker of a Parquet file) is read, checked,
turned into series and let go before the next, and a part whose file has not
changed since its entry was written is not read at all. Prices that come as
one frame (bundled, yfinance) are cached per ticker by a digest of its rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial

import pandas as pd

from data import sources
from data.feature_cache import FeatureCache, FeatureSpec, file_stamp, rows_stamp
from data.features import Series, build_series
from data.folder import SUFFIXES, PricePart, TickerOwners, check_found, list_parts
from latentcast.errors import DataError

logger = logging.getLogger(__name__)


def load_series(
    source: str,
    spec: FeatureSpec,
    cache: FeatureCache | None = None,
    *,
    tickers: Sequence[str] | None = None,
    path: str | None = None,
) -> list[Series]:
    """Series of every ticker of ``source`` (as ``sources.load`` names them), sorted by ticker.

    Files (``csv``, ``parquet``) are read part by part; other sources load
    their frame, trimmed to the spec's dates, first.
    """
    wanted = [t.strip().upper() for t in tickers or () if t.strip()]
    if source in SUFFIXES:
        if path is None:
            raise DataError(f"source {source!r} needs a path to a file or folder")
        return file_series(path, source, spec, wanted, cache)
    frame = sources.load(source, tickers=wanted, path=path, start=spec.start, end=spec.end)
    return frame_series(frame, spec, cache)


def frame_series(frame: pd.DataFrame, spec: FeatureSpec, cache: FeatureCache | None = None) -> list[Series]:
    """``build_series`` of a tidy frame, each ticker's series from ``cache`` when its rows are unchanged."""
    if cache is None:
        return build_series(frame, spec.names, spec.horizon)
    out: list[Series] = []
    for ticker, rows in frame.groupby("ticker", sort=True):
        build = partial(build_series, rows, spec.names, spec.horizon)
        out += cache.series(f"rows#{ticker}", rows_stamp(rows), spec, build)
    _log(cache)
    return out


def file_series(
    path: str,
    kind: str,
    spec: FeatureSpec,
    tickers: Sequence[str] | None = None,
    cache: FeatureCache | None = None,
) -> list[Series]:
    """Series of the files of ``path``, one part at a time (``data.folder`` says how files are read)."""
    owners, seen, out = TickerOwners(), set(), []
    for part in list_parts(path, kind, tickers):
        if cache is None:
            got = _part_series(part, spec)
        else:
            # stamped before the read: a file changed while it is read leaves an entry that misses next time
            got = cache.series(part.name, file_stamp(part.path), spec, partial(_part_series, part, spec))
        owners.claim(part, [s.ticker for s in got])
        seen |= {s.ticker for s in got}
        out += [s for s in got if not tickers or s.ticker in tickers]
    check_found(path, kind, tickers, seen)
    if not out:
        raise DataError(f"{path}: no prices between {spec.start or 'the start'} and {spec.end or 'the end'}")
    if cache is not None:
        _log(cache)
    return sorted(out, key=lambda s: s.ticker)


def _part_series(part: PricePart, spec: FeatureSpec) -> list[Series]:
    """Every ticker of one part, trimmed to the spec's dates (a ticker with no rows there is left out)."""
    rows = part.read()
    dates = rows["date"]
    mask = pd.Series(True, index=rows.index)
    if spec.start is not None:
        mask &= dates >= pd.Timestamp(spec.start)
    if spec.end is not None:
        mask &= dates < pd.Timestamp(spec.end)
    rows = rows[mask]
    if rows.empty:
        return []
    return build_series(rows, spec.names, spec.horizon)


def _log(cache: FeatureCache) -> None:
    logger.info(
        "feature cache %s: %d parts read from it, %d computed (%d of them replacing unreadable entries)",
        cache.directory,
        cache.hits,
        cache.misses,
        cache.rebuilt,
    )
