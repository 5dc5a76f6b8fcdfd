from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from data import sources
from latentcast.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures"


def test_bundled_has_the_four_real_tickers():
    frame = sources.bundled()
    counts = frame.groupby("ticker").size().to_dict()
    assert counts == {"AAPL": 3270, "GOOG": 2148, "IBM": 3270, "MSFT": 3270}
    spans = sources.summary(frame)
    assert str(spans.loc["GOOG", "first"]) == "2004-08-19"
    assert str(spans.loc["MSFT", "last"]) == "2013-03-01"


def test_bundled_prices_are_split_adjusted():
    msft = sources.bundled(["MSFT"]).set_index("date")
    # MSFT split 2:1 on 2003-02-18: raw closes 48.30 -> 24.96, adjusted they move about +3%
    before, after = msft.loc["2003-02-14"], msft.loc["2003-02-18"]
    assert after["close"] / before["close"] == pytest.approx(16.61565282547 / 16.076442938105)
    assert after["high"] / after["low"] == pytest.approx(24.99 / 24.4)
    assert after["close"] == pytest.approx(after["adj_close"])


def test_unknown_ticker_lists_the_available_ones():
    with pytest.raises(DataError) as err:
        sources.load("bundled", tickers=["TSLA"])
    assert str(err.value) == "bundled: no prices for TSLA; available: AAPL, GOOG, IBM, MSFT"


def test_unknown_source_is_named():
    with pytest.raises(DataError) as err:
        sources.load("feather")
    assert str(err.value) == "unknown source 'feather'; valid sources: bundled, csv, parquet, yfinance"


def test_start_and_end_trim_any_source():
    frame = sources.load("bundled", tickers=["ibm"], start="2010-01-01", end="2010-02-01")
    assert frame["date"].min() == pd.Timestamp("2010-01-04")
    assert frame["date"].max() == pd.Timestamp("2010-01-29")
    assert set(frame["ticker"]) == {"IBM"}


def write_yahoo_style_csv(path: Path, ticker: str, rows: int = 30) -> pd.DataFrame:
    frame = sources.bundled([ticker]).head(rows)
    out = frame.drop(columns=["ticker"]).rename(columns={"adj_close": "Adj Close", "date": "Date"})
    out.columns = [c.title() if c != "Adj Close" else c for c in out.columns]
    out["Date"] = out["Date"].dt.strftime("%Y-%m-%d")
    out.to_csv(path, index=False)
    return frame


def test_csv_file_without_ticker_column_takes_the_file_name(tmp_path):
    expected = write_yahoo_style_csv(tmp_path / "aapl.csv", "AAPL")
    frame = sources.load("csv", path=tmp_path / "aapl.csv")
    pd.testing.assert_frame_equal(frame, expected.reset_index(drop=True), check_exact=False)


def test_csv_folder_reads_every_file_including_gzip(tmp_path):
    write_yahoo_style_csv(tmp_path / "ibm.csv", "IBM", rows=10)
    write_yahoo_style_csv(tmp_path / "msft.csv", "MSFT", rows=12)
    with open(tmp_path / "msft.csv", "rb") as src, gzip.open(tmp_path / "msft.csv.gz", "wb") as dst:
        dst.write(src.read())
    (tmp_path / "msft.csv").unlink()
    (tmp_path / "notes.txt").write_text("not prices")
    frame = sources.load("csv", path=tmp_path)
    assert frame.groupby("ticker").size().to_dict() == {"IBM": 10, "MSFT": 12}


def test_csv_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "ibm.csv"
    write_yahoo_style_csv(path, "IBM", rows=10)
    lines = path.read_text().splitlines()
    fields = lines[4].split(",")
    fields[4] = "-3.5"  # Close of the fourth data row, line 5 of the file
    lines[4] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        sources.load("csv", path=path)
    assert str(err.value) == f"{path}: IBM line 5 (2000-03-06): close is -3.5; prices must be positive"


def test_csv_same_ticker_in_two_files_is_an_error(tmp_path):
    write_yahoo_style_csv(tmp_path / "a.csv", "IBM", rows=5)
    frame = pd.read_csv(tmp_path / "a.csv")
    frame.insert(0, "Ticker", "A")
    frame.to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(DataError) as err:
        sources.load("csv", path=tmp_path)
    assert str(err.value) == f"{tmp_path / 'b.csv'}: ticker A is also in {tmp_path / 'a.csv'}"


def test_csv_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(DataError) as err:
        sources.load("csv", path=tmp_path / "nope.csv")
    assert str(err.value) == f"{tmp_path / 'nope.csv'}: no such file or folder"
    with pytest.raises(DataError) as err:
        sources.load("csv", path=tmp_path)
    assert str(err.value) == f"{tmp_path}: no .csv or .csv.gz files in this folder"


def recorded_download() -> pd.DataFrame:
    """A yfinance 1.x ``download`` result, recorded in its real shape."""
    return pd.read_csv(FIXTURES / "yfinance_download.csv", header=[0, 1], index_col=0, parse_dates=True)


def test_recorded_yfinance_frame_has_the_real_shape():
    raw = recorded_download()
    assert list(raw.columns.names) == ["Price", "Ticker"]
    assert raw.index.name == "Date"
    assert set(raw.columns.get_level_values("Price")) == {"Adj Close", "Close", "High", "Low", "Open", "Volume"}


def test_yfinance_frame_becomes_tidy():
    frame = sources.from_yfinance_frame(recorded_download(), ["GOOG", "MSFT"])
    counts = frame.groupby("ticker").size().to_dict()
    # the outer join left GOOG all-NaN before its IPO: those rows are dropped
    assert counts == {"GOOG": 7, "MSFT": 14}
    assert frame["close"].tolist() == pytest.approx(frame["adj_close"].tolist())


def test_yfinance_missing_ticker_is_an_error():
    with pytest.raises(DataError) as err:
        sources.from_yfinance_frame(recorded_download(), ["GOOG", "MSFT", "NOPE"])
    assert str(err.value) == "yfinance returned no rows for NOPE"
    with pytest.raises(DataError) as err:
        sources.from_yfinance_frame(pd.DataFrame(), ["NOPE"])
    assert str(err.value) == "yfinance returned no data for NOPE"


def test_yfinance_source_downloads_and_caches(monkeypatch, tmp_path):
    calls = []

    def fake_download(tickers, **kwargs):
        calls.append((tickers, kwargs))
        return recorded_download()

    monkeypatch.setattr("yfinance.download", fake_download)
    frame = sources.load("yfinance", tickers=["msft", "goog"], cache_dir=tmp_path)
    assert calls[0][0] == ["MSFT", "GOOG"]
    assert calls[0][1]["auto_adjust"] is False and calls[0][1]["multi_level_index"] is True
    cached = sources.PriceCache(tmp_path).load(["GOOG", "MSFT"])
    pd.testing.assert_frame_equal(cached, frame)


def test_fetch_fresh_prefers_yfinance_then_cache_then_bundled(tmp_path):
    def download(tickers, start, end):
        return sources.from_yfinance_frame(recorded_download(), tickers)

    def offline(tickers, start, end):
        raise ConnectionError("no route to host")

    fresh = sources.fetch_fresh(["MSFT"], tmp_path, download=download)
    assert (fresh.source, fresh.reason) == ("yfinance", "downloaded 14 rows")

    cached = sources.fetch_fresh(["MSFT"], tmp_path, download=offline)
    assert cached.source == "cache"
    assert cached.reason == "yfinance failed: ConnectionError: no route to host; used the cache"
    pd.testing.assert_frame_equal(cached.frame, fresh.frame)

    fallback = sources.fetch_fresh(["IBM"], tmp_path, download=offline)
    assert fallback.source == "bundled"
    assert fallback.reason == (
        f"yfinance failed: ConnectionError: no route to host; {tmp_path}: no cached prices for IBM; "
        "used the bundled prices"
    )
    assert set(fallback.frame["ticker"]) == {"IBM"}


@pytest.mark.network
def test_yfinance_live_download(tmp_path):
    frame = sources.load("yfinance", tickers=["MSFT"], start="2024-01-01", end="2024-02-01", cache_dir=tmp_path)
    assert len(frame) > 15
