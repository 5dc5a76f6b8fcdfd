"""Features cached per part of the prices: hit, invalidated by new prices or a new spec, rebuilt when corrupt."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from data import sources
from data.feature_cache import FeatureCache, FeatureSpec
from data.features import Series, build_series
from data.universe import frame_series, load_series

SPEC = FeatureSpec(("returns", "range"), horizon=3)


def write_folder(folder: Path, tickers: tuple[str, ...] = ("IBM", "MSFT"), rows: int = 60) -> Path:
    folder.mkdir()
    for ticker in tickers:
        frame = sources.bundled([ticker]).head(rows).drop(columns="ticker")
        frame.assign(date=frame["date"].dt.strftime("%Y-%m-%d")).to_csv(folder / f"{ticker}.csv", index=False)
    return folder


def assert_same(got: list[Series], expected: list[Series]) -> None:
    assert [s.ticker for s in got] == [s.ticker for s in expected]
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a.dates, b.dates)
        np.testing.assert_array_equal(a.close, b.close)
        np.testing.assert_array_equal(a.features, b.features)
        np.testing.assert_array_equal(a.targets, b.targets)


def fresh(cache: FeatureCache) -> FeatureCache:
    """A new cache object on the same folder (its counters at zero), as the next run would open it."""
    return FeatureCache(cache.directory)


def test_a_second_load_reads_every_part_from_the_cache_and_matches_the_first(tmp_path):
    folder, cache = write_folder(tmp_path / "prices"), FeatureCache(tmp_path / "cache")
    first = load_series("csv", SPEC, cache, path=str(folder))
    assert (cache.hits, cache.misses) == (0, 2)
    again = fresh(cache)
    second = load_series("csv", SPEC, again, path=str(folder))
    assert (again.hits, again.misses, again.rebuilt) == (2, 0, 0)
    assert_same(second, first)
    assert_same(first, build_series(sources.load("csv", path=folder), SPEC.names, SPEC.horizon))


def test_a_changed_file_misses_and_replaces_its_entry(tmp_path):
    folder, cache = write_folder(tmp_path / "prices"), FeatureCache(tmp_path / "cache")
    load_series("csv", SPEC, cache, path=str(folder))
    entries = sorted(cache.directory.glob("*.npz"))
    longer = sources.bundled(["IBM"]).head(80).drop(columns="ticker")
    longer.assign(date=longer["date"].dt.strftime("%Y-%m-%d")).to_csv(folder / "IBM.csv", index=False)
    again = fresh(cache)
    series = {s.ticker: s for s in load_series("csv", SPEC, again, path=str(folder))}
    assert (again.hits, again.misses) == (1, 1)
    assert len(series["IBM"]) == 79  # the new file's rows, not the cached ones
    assert sorted(cache.directory.glob("*.npz")) == entries  # replaced, not added beside


def test_a_touched_file_with_the_same_content_is_read_again(tmp_path):
    folder, cache = write_folder(tmp_path / "prices"), FeatureCache(tmp_path / "cache")
    load_series("csv", SPEC, cache, path=str(folder))
    stat = (folder / "MSFT.csv").stat()
    os.utime(folder / "MSFT.csv", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    again = fresh(cache)
    load_series("csv", SPEC, again, path=str(folder))
    assert (again.hits, again.misses) == (1, 1)


@pytest.mark.parametrize(
    "other",
    [
        FeatureSpec(("returns",), horizon=3),
        FeatureSpec(("returns", "range"), horizon=5),
        FeatureSpec(("returns", "range"), 3, start="2000-02-01"),
    ],
    ids=["features", "horizon", "dates"],
)
def test_another_feature_spec_misses_and_keeps_its_own_entry(tmp_path, other):
    folder, cache = write_folder(tmp_path / "prices"), FeatureCache(tmp_path / "cache")
    load_series("csv", SPEC, cache, path=str(folder))
    again = fresh(cache)
    series = load_series("csv", other, again, path=str(folder))
    assert (again.hits, again.misses) == (0, 2)
    assert series[0].features.shape[1] == len(other.names)
    assert series[0].targets.shape[1] == other.horizon
    back = fresh(cache)
    load_series("csv", SPEC, back, path=str(folder))
    assert back.hits == 2  # the first spec's entries are still there


@pytest.mark.parametrize("damage", ["garbage", "truncated", "flipped byte", "wrong shape"])
def test_a_corrupt_entry_is_rebuilt_not_trusted(tmp_path, damage):
    folder, cache = write_folder(tmp_path / "prices", ("IBM",)), FeatureCache(tmp_path / "cache")
    expected = load_series("csv", SPEC, cache, path=str(folder))
    (entry,) = cache.directory.glob("*.npz")
    raw = entry.read_bytes()
    if damage == "garbage":
        entry.write_bytes(b"\x00" * 64)
    elif damage == "truncated":
        entry.write_bytes(raw[: len(raw) // 2])
    elif damage == "flipped byte":
        middle = len(raw) // 2
        entry.write_bytes(raw[:middle] + bytes([raw[middle] ^ 0xFF]) + raw[middle + 1 :])
    else:
        with np.load(entry) as arrays:
            kept = dict(arrays)
        kept["features"] = kept["features"][:, :1]
        with entry.open("wb") as handle:
            np.savez(handle, **kept)
    again = fresh(cache)
    assert_same(load_series("csv", SPEC, again, path=str(folder)), expected)
    assert (again.hits, again.misses, again.rebuilt) == (0, 1, 1)
    last = fresh(cache)
    load_series("csv", SPEC, last, path=str(folder))
    assert last.hits == 1  # the rebuilt entry is whole again


def test_a_frame_is_cached_per_ticker_by_its_rows(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    first = load_series("bundled", SPEC, cache, tickers=["IBM", "MSFT"])
    again = fresh(cache)
    assert_same(load_series("bundled", SPEC, again, tickers=["IBM", "MSFT"]), first)
    assert (again.hits, again.misses) == (2, 0)
    changed = sources.bundled(["IBM", "MSFT"])
    changed["close"] = changed["close"].where(changed.index != 10, changed["close"] * 1.01)  # one IBM close
    last = fresh(cache)
    assert len(frame_series(changed, SPEC, last)) == 2
    assert (last.hits, last.misses) == (1, 1)


def test_a_cache_that_cannot_be_written_costs_time_not_the_load(tmp_path):
    folder = write_folder(tmp_path / "prices", ("IBM",))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be")
    cache = FeatureCache(blocker / "features")
    assert_same(load_series("csv", SPEC, cache, path=str(folder)), load_series("csv", SPEC, path=str(folder)))
    assert cache.misses == 1
