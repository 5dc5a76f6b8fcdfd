"""Price files read one part at a time: CSV and Parquet, a file per ticker or one file of many."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data import sources
from data.folder import list_parts, read_parts, read_prices
from latentcast.errors import DataError


def bundled_rows(ticker: str, rows: int = 40) -> pd.DataFrame:
    """Real rows of one bundled ticker, without its ticker column."""
    return sources.bundled([ticker]).head(rows).drop(columns="ticker")


def write_universe_parquet(path: Path, tickers: tuple[str, ...], rows: int = 40, group: int = 25) -> pd.DataFrame:
    """One Parquet file with a ticker column, sorted by ticker, in row groups of ``group`` rows."""
    frame = pd.concat([bundled_rows(t, rows).assign(Ticker=t) for t in tickers], ignore_index=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=group)
    return frame


def test_a_parquet_file_per_ticker_reads_as_its_csv_twin(tmp_path):
    for ticker in ("IBM", "MSFT"):
        rows = bundled_rows(ticker)
        rows.to_parquet(tmp_path / f"{ticker.lower()}.parquet", index=False)
        rows.assign(date=rows["date"].dt.strftime("%Y-%m-%d")).to_csv(tmp_path / f"{ticker}.csv", index=False)
    from_parquet = sources.load("parquet", path=tmp_path)
    from_csv = sources.load("csv", path=tmp_path)
    pd.testing.assert_frame_equal(from_parquet, from_csv)
    assert sorted(from_parquet["ticker"].unique()) == ["IBM", "MSFT"]


def test_one_parquet_file_of_many_tickers_is_read_one_ticker_at_a_time(tmp_path):
    path = tmp_path / "universe.parquet"
    write_universe_parquet(path, ("AAPL", "IBM", "MSFT"))
    parts = list_parts(path, "parquet")
    assert [p.ticker for p in parts] == ["AAPL", "IBM", "MSFT"]
    read = {part.ticker: rows for part, rows in read_parts(parts)}
    for ticker, rows in read.items():
        assert set(rows["ticker"]) == {ticker}
        expected = sources.bundled([str(ticker)]).head(40).reset_index(drop=True)
        pd.testing.assert_frame_equal(rows, expected)
    assert list_parts(path, "parquet", ["IBM"])[0].ticker == "IBM"
    assert len(read_prices(path, "parquet", ["IBM", "MSFT"])) == 80


def test_a_bad_row_of_a_shared_parquet_file_is_named_by_its_row_in_the_file(tmp_path):
    path = tmp_path / "universe.parquet"
    frame = write_universe_parquet(path, ("AAPL", "IBM"))
    frame.loc[52, "close"] = -2.0  # row 53 of the file, the 13th of IBM, in the third row group
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=25)
    day = pd.Timestamp(frame["date"].iloc[52]).date().isoformat()
    with pytest.raises(DataError) as err:
        sources.load("parquet", path=path)
    assert str(err.value) == f"{path}: IBM row 53 ({day}): close is -2.0; prices must be positive"


def test_a_folder_lists_its_files_without_reading_them_and_skips_tickers_not_asked_for(tmp_path):
    for ticker in ("IBM", "MSFT"):
        bundled_rows(ticker).to_csv(tmp_path / f"{ticker}.csv", index=False)
    (tmp_path / "MSFT.csv").write_text("date,open\n2000-01-03,oops\n")  # named MSFT: never read
    parts = list_parts(tmp_path, "csv", ["IBM"])
    assert [p.path.name for p in parts] == ["IBM.csv"]
    assert sources.load("csv", path=tmp_path, tickers=["IBM"])["ticker"].unique().tolist() == ["IBM"]


def test_an_unreadable_parquet_file_and_an_unknown_ticker_are_named(tmp_path):
    bundled_rows("IBM").to_parquet(tmp_path / "IBM.parquet", index=False)
    (tmp_path / "MSFT.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"MSFT\.parquet: not a readable Parquet file"):
        sources.load("parquet", path=tmp_path)
    (tmp_path / "MSFT.parquet").unlink()
    with pytest.raises(DataError) as err:
        sources.load("parquet", path=tmp_path, tickers=["TSLA"])
    assert str(err.value) == f"{tmp_path}: no prices for TSLA; available: IBM"
    with pytest.raises(DataError) as err:
        sources.load("parquet", path=tmp_path / "none")
    assert str(err.value) == f"{tmp_path / 'none'}: no such file or folder"


def test_a_row_without_a_ticker_in_a_shared_parquet_file_is_named(tmp_path):
    path = tmp_path / "universe.parquet"
    frame = write_universe_parquet(path, ("AAPL", "IBM"))
    frame["Ticker"] = frame["Ticker"].where(frame.index != 44, None)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    with pytest.raises(DataError) as err:
        sources.load("parquet", path=path)
    assert str(err.value) == f"{path}: row 45: no ticker in column Ticker"
