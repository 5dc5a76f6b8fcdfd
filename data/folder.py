"""Prices from files, read one part at a time: a file, or one ticker of a Parquet file.

A path is a file or a folder of files of one kind: ``csv`` (``*.csv``,
``*.csv.gz``) or ``parquet`` (``*.parquet``). A file without a ticker column
holds one ticker, named by the file (``msft.csv`` holds MSFT); a CSV file with
a ticker column is read whole; a Parquet file with a ticker column is read one
ticker at a time (only the row groups that hold it), so that one Parquet file
of a whole universe never sits in memory at once.

Each part is checked on its own by ``data.prices.tidy``: an error names the
file and its line (CSV, counting the header as line 1) or row (Parquet,
counting from 1), and a ticker found in two files names both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data.prices import canonical_name, tidy
from latentcast.errors import DataError

SUFFIXES = {"csv": (".csv", ".csv.gz"), "parquet": (".parquet",)}
CSV_FIRST_LINE = 2  # a CSV file's first data line: the header is line 1
PARQUET_FIRST_ROW = 1


@dataclass(frozen=True)
class PricePart:
    """One read of a price path: a whole file, or the rows of one ticker of a Parquet file."""

    path: Path
    kind: str  # "csv" or "parquet"
    ticker: str | None = None  # known without reading: the file's name, or one ticker of a Parquet file
    # that ticker's rows in a Parquet file of several (0-based, ascending); None: the whole file
    rows: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        """What names the part in a cache: its resolved path, and the ticker read from a shared file."""
        return f"{self.path.resolve()}#{self.ticker if self.rows is not None else ''}"

    def read(self) -> pd.DataFrame:
        """The part's tidy rows (``DataError`` naming the file and row if any is unusable)."""
        if self.kind == "csv":
            try:
                raw = pd.read_csv(self.path, dtype=str, skipinitialspace=True)
            except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
                raise DataError(f"{self.path}: not a readable CSV file ({exc})") from exc
            raw.index = pd.RangeIndex(CSV_FIRST_LINE, len(raw) + CSV_FIRST_LINE)
            return tidy(raw, str(self.path), row_label="line", ticker=_stem(self.path))
        raw = self._read_parquet()
        return tidy(raw, str(self.path), row_label="row", ticker=_stem(self.path))

    def _read_parquet(self) -> pd.DataFrame:
        import pyarrow.parquet as pq

        try:
            handle = pq.ParquetFile(self.path)
            if self.rows is None:
                raw = handle.read().to_pandas()
                raw.index = pd.RangeIndex(PARQUET_FIRST_ROW, len(raw) + PARQUET_FIRST_ROW)
                return raw
            rows = self.rows
            sizes = [handle.metadata.row_group(g).num_rows for g in range(handle.num_row_groups)]
            starts = np.concatenate([[0], np.cumsum(sizes)])
            groups = sorted(set(np.searchsorted(starts, rows, side="right") - 1))
            table = handle.read_row_groups(groups)
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.path}: not a readable Parquet file ({exc})") from exc
        offsets = np.concatenate([np.arange(starts[g], starts[g + 1]) for g in groups])
        local = np.flatnonzero(np.isin(offsets, rows))
        raw = table.take(local).to_pandas()
        raw.index = pd.Index(offsets[local] + PARQUET_FIRST_ROW)
        return raw


def list_parts(path: str | os.PathLike[str], kind: str, tickers: Sequence[str] | None = None) -> list[PricePart]:
    """The parts of ``path`` in file order, without those a file name rules out of ``tickers`` (all when None)."""
    if kind not in SUFFIXES:
        raise DataError(f"unknown price file kind {kind!r}; valid kinds: {', '.join(SUFFIXES)}")
    root = Path(path)
    if root.is_dir():
        files = sorted(p for p in root.iterdir() if p.name.lower().endswith(SUFFIXES[kind]))
        if not files:
            raise DataError(f"{root}: no {' or '.join(SUFFIXES[kind])} files in this folder")
    elif root.is_file():
        files = [root]
    else:
        raise DataError(f"{root}: no such file or folder")
    wanted = set(tickers or ())
    parts = [part for file in files for part in _file_parts(file, kind)]
    return [p for p in parts if not wanted or p.ticker is None or p.ticker.strip().upper() in wanted]


def _file_parts(file: Path, kind: str) -> list[PricePart]:
    if kind == "csv":
        try:
            header = pd.read_csv(file, nrows=0, skipinitialspace=True).columns
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError, OSError) as exc:
            raise DataError(f"{file}: not a readable CSV file ({exc})") from exc
        has_ticker = "ticker" in {canonical_name(str(c)) for c in header}
        return [PricePart(file, kind, None if has_ticker else _stem(file))]
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(file)
        column = next((n for n in handle.schema_arrow.names if canonical_name(n) == "ticker"), None)
        if column is None:
            return [PricePart(file, kind, _stem(file))]
        # the ticker column, read once, says which rows (and so which row groups) hold each ticker
        encoded = handle.read(columns=[column]).column(0).combine_chunks().dictionary_encode()
    except (OSError, ValueError) as exc:
        raise DataError(f"{file}: not a readable Parquet file ({exc})") from exc
    if encoded.null_count:
        first = int(np.flatnonzero(encoded.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{file}: row {first + PARQUET_FIRST_ROW}: no ticker in column {column}")
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(encoded.dictionary) + 1))
    names = [str(name) for name in encoded.dictionary.to_pylist()]
    return [
        PricePart(file, kind, names[i], order[bounds[i] : bounds[i + 1]])
        for i in sorted(range(len(names)), key=names.__getitem__)
    ]


def _stem(file: Path) -> str:
    return file.name.split(".")[0].upper()


class TickerOwners:
    """Which file each ticker came from: a ticker found in a second file is an error naming both."""

    def __init__(self) -> None:
        self.owners: dict[str, Path] = {}

    def claim(self, part: PricePart, tickers: Sequence[str]) -> None:
        for ticker in tickers:
            if ticker in self.owners:
                raise DataError(f"{part.path}: ticker {ticker} is also in {self.owners[ticker]}")
            self.owners[ticker] = part.path


def read_parts(parts: Sequence[PricePart]) -> Iterator[tuple[PricePart, pd.DataFrame]]:
    """Each part with its tidy rows, one at a time; a ticker in two files is an error."""
    owners = TickerOwners()
    for part in parts:
        rows = part.read()
        owners.claim(part, rows["ticker"].unique().tolist())
        yield part, rows


def read_prices(path: str | os.PathLike[str], kind: str, tickers: Sequence[str] | None = None) -> pd.DataFrame:
    """Every part of ``path`` as one tidy frame (only ``tickers`` when given; an unknown one is an error)."""
    frames, seen = [], set()
    for _, rows in read_parts(list_parts(path, kind, tickers)):
        seen |= set(rows["ticker"].unique())
        frames.append(keep(rows, tickers))
    check_found(path, kind, tickers, seen)
    combined = pd.concat(frames, ignore_index=True).sort_values(["ticker", "date"], kind="stable")
    return combined.reset_index(drop=True)


def keep(rows: pd.DataFrame, tickers: Sequence[str] | None) -> pd.DataFrame:
    """Only the rows of ``tickers`` (all when None)."""
    return rows[rows["ticker"].isin(list(tickers))] if tickers else rows


def check_found(path: str | os.PathLike[str], kind: str, tickers: Sequence[str] | None, seen: set[str]) -> None:
    """A ``DataError`` listing what ``path`` holds if a ticker asked for is not among those ``seen`` in its parts."""
    unknown = [t for t in tickers or () if t not in seen]
    if unknown:
        available = sorted({p.ticker.strip().upper() for p in list_parts(path, kind) if p.ticker} | seen)
        raise DataError(f"{path}: no prices for {', '.join(unknown)}; available: {', '.join(available)}")
