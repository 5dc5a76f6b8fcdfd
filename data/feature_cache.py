"""Features and targets of each ticker, computed once and kept on disk.

An entry is one ``.npz`` file holding the ``Series`` of one part of the source
data (a price file, one ticker of a Parquet file, or one ticker's rows of a
frame) for one ``FeatureSpec``. The entry's file name comes from what stays
put when the prices change (the part and the spec), so a changed file
replaces its entry instead of adding another; the entry carries the full key,
which adds the stamp of the source data, and an entry whose key differs is
rebuilt.

The stamp of a file is its size and modification time in nanoseconds, the
quick check that rsync and make rely on: hashing the content would read the
whole file, which is most of what a hit saves. A rewrite that keeps both
(``cp -p`` of another file of the same size) goes unnoticed: ``touch`` the
file or delete the cache folder. The stamp of rows that come as a frame
(yfinance, bundled) is a digest of the rows themselves.

Entries are written by atomic rename and read without pickle; one that cannot
be read, fails its zip checksum or holds arrays that do not fit the spec is
logged and rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.features import Series, check_features
from data.files import replaced_whole

logger = logging.getLogger(__name__)

# Bumped whenever the features, the targets or the entry layout change meaning: older entries then miss.
FORMAT = 1
DIGEST_BYTES = 16
ARTIFACTS_FOLDER = Path("cache", "features")  # where training keeps its cache, within the artifacts folder
FRAME_COLUMNS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class FeatureSpec:
    """What the features of a part depend on besides its prices: names, horizon and the date bounds."""

    names: tuple[str, ...]
    horizon: int
    start: str | None = None  # first date kept, ISO
    end: str | None = None  # end date (exclusive), ISO

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", check_features(self.names))

    def text(self) -> str:
        return f"format={FORMAT};features={','.join(self.names)};horizon={self.horizon};{self.start}..{self.end}"


def digest(*parts: str) -> str:
    """A short hex digest of ``parts``, each kept apart from the next."""
    h = hashlib.blake2b(digest_size=DIGEST_BYTES)
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def file_stamp(path: Path) -> str:
    """Size and modification time (ns) of ``path``."""
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def rows_stamp(rows: pd.DataFrame) -> str:
    """A digest of one ticker's tidy rows: dates, prices and volume."""
    h = hashlib.blake2b(digest_size=DIGEST_BYTES)
    h.update(np.ascontiguousarray(rows["date"].to_numpy("datetime64[ns]").view(np.int64)).tobytes())
    for column in FRAME_COLUMNS:
        h.update(np.ascontiguousarray(rows[column].to_numpy(np.float64)).tobytes())
    return h.hexdigest()


def artifacts_cache(artifacts: str | os.PathLike[str]) -> FeatureCache:
    """The feature cache of the artifacts folder ``artifacts``, which ``train`` and ``retrain`` share."""
    return FeatureCache(Path(artifacts) / ARTIFACTS_FOLDER)


class FeatureCache:
    """A folder of ``.npz`` entries, each the ``Series`` of one part for one spec.

    ``hits``, ``misses`` and ``rebuilt`` (entries found unreadable or not
    fitting) count what this object did, for logs and tests.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.hits = self.misses = self.rebuilt = 0

    def entry(self, part: str, spec: FeatureSpec) -> Path:
        return self.directory / f"{digest(part, spec.text())}.npz"

    def series(self, part: str, stamp: str, spec: FeatureSpec, build: Callable[[], list[Series]]) -> list[Series]:
        """The series of ``part`` from its entry if the entry's key matches, else ``build()`` and store them."""
        path, key = self.entry(part, spec), digest(part, stamp, spec.text())
        cached = self._read(path, key, spec) if path.is_file() else None
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        built = build()
        try:
            self._write(path, key, built, spec)
        except OSError as exc:  # a cache that cannot be written (full disk, read-only folder) costs time, not the run
            logger.warning("feature cache entry %s not written (%s)", path, exc)
        return built

    def _read(self, path: Path, key: str, spec: FeatureSpec) -> list[Series] | None:
        try:
            # the file opened here, not by np.load, which leaves it open when the zip is unreadable
            with path.open("rb") as handle, np.load(handle, allow_pickle=False) as entry:
                if str(entry["key"]) != key:
                    return None  # the prices or the format changed: rebuilt, and the entry replaced
                arrays = {name: entry[name] for name in ("tickers", "lengths", "dates", "close", "features", "targets")}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            logger.warning("feature cache entry %s is unreadable (%s): rebuilding it", path, exc)
            self.rebuilt += 1
            return None
        series = _unpack(arrays, spec)
        if series is None:
            logger.warning("feature cache entry %s does not fit %s: rebuilding it", path, spec.text())
            self.rebuilt += 1
        return series

    def _write(self, path: Path, key: str, series: Sequence[Series], spec: FeatureSpec) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {"key": np.asarray(key), **_pack(series, spec)}
        with replaced_whole(path) as handle:
            np.savez(handle, **arrays)


def _pack(series: Sequence[Series], spec: FeatureSpec) -> dict[str, np.ndarray]:
    """The arrays of an entry; the empty ones of a part with no rows in the spec's dates keep their shapes."""
    features, horizon = len(spec.names), spec.horizon
    return {
        "tickers": np.asarray([s.ticker for s in series], dtype=str),
        "lengths": np.asarray([len(s) for s in series], dtype=np.int64),
        "dates": np.concatenate([np.empty(0, "datetime64[ns]"), *(s.dates for s in series)]).astype("datetime64[ns]"),
        "close": np.concatenate([np.empty(0), *(s.close for s in series)]),
        "features": np.concatenate([np.empty((0, features)), *(s.features for s in series)]),
        "targets": np.concatenate([np.empty((0, horizon)), *(s.targets for s in series)]),
    }


def _unpack(arrays: dict[str, np.ndarray], spec: FeatureSpec) -> list[Series] | None:
    """The series of an entry, or None when its arrays do not fit together or the spec."""
    lengths, dates = arrays["lengths"], arrays["dates"]
    rows = len(dates)
    fits = (
        lengths.ndim == 1
        and len(arrays["tickers"]) == len(lengths)
        and (lengths >= 1).all()
        and int(lengths.sum()) == rows
        and dates.dtype == np.dtype("datetime64[ns]")
        and arrays["close"].shape == (rows,)
        and arrays["features"].shape == (rows, len(spec.names))
        and arrays["targets"].shape == (rows, spec.horizon)
    )
    if not fits:
        return None
    out, first = [], 0
    for ticker, length in zip(arrays["tickers"], lengths, strict=True):
        stop = first + int(length)
        part = slice(first, stop)
        out.append(
            Series(str(ticker), dates[part], arrays["close"][part], arrays["features"][part], arrays["targets"][part])
        )
        first = stop
    return out
