from __future__ import annotations

import pandas as pd
import pytest

from data import sources
from data.fetch import fill_cache, read_tickers
from latentcast.errors import DataError
from service.cli import main
from tests.data.test_sources import recorded_download


def recorded(tickers, start, end):
    """The recorded yfinance frame, as the download of ``tickers`` would give it."""
    return sources.from_yfinance_frame(recorded_download(), tickers)


def test_fetch_downloads_in_chunks_and_resumes_after_a_failure(tmp_path):
    cache = sources.PriceCache(tmp_path)
    calls: list[list[str]] = []

    def flaky(tickers, start, end):
        calls.append(list(tickers))
        if tickers == ["MSFT"]:
            raise ConnectionError("no route to host")
        return recorded(tickers, start, end)

    first = fill_cache(["GOOG", "MSFT"], cache, download=flaky, chunk=1, progress=False)
    assert calls == [["GOOG"], ["MSFT"]]
    assert (first.fetched, first.cached) == (["GOOG"], [])
    assert first.failed == {"MSFT": "ConnectionError: no route to host"}
    assert cache.path("GOOG").is_file() and not cache.path("MSFT").is_file()

    calls.clear()
    second = fill_cache(["GOOG", "MSFT"], cache, download=recorded, chunk=2, progress=False)
    assert (second.fetched, second.cached, second.failed) == (["MSFT"], ["GOOG"], {})
    frame = cache.load(["GOOG", "MSFT"])
    assert frame.groupby("ticker").size().to_dict() == {"GOOG": 7, "MSFT": 14}
    pd.testing.assert_frame_equal(frame, recorded(["GOOG", "MSFT"], None, None))


def test_tickers_file_skips_comments_and_duplicates_and_names_a_bad_line(tmp_path):
    path = tmp_path / "tickers.txt"
    path.write_text("# index members\nmsft\n\nGOOG  # class C\nMSFT\n")
    assert read_tickers(path) == ["MSFT", "GOOG"]
    path.write_text("MSFT\nGOOG IBM\n")
    with pytest.raises(DataError) as err:
        read_tickers(path)
    assert str(err.value) == f"{path}: line 2: one ticker a line, got 'GOOG IBM'"
    path.write_text("# nothing\n")
    with pytest.raises(DataError, match="no tickers in this file"):
        read_tickers(path)


def test_data_fetch_command_fills_the_retrain_cache(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("yfinance.download", lambda tickers, **kwargs: recorded_download())
    (tmp_path / "tickers.txt").write_text("GOOG\nMSFT\n")
    argv = ["data", "fetch", "--artifacts", str(tmp_path), "--tickers-file", str(tmp_path / "tickers.txt")]
    assert main([*argv, "--no-progress"]) == 0
    cache = tmp_path / "cache" / "yfinance"
    assert capsys.readouterr().out == f"2 fetched, 0 already cached in {cache}\n"
    assert main([*argv, "--no-progress"]) == 0
    assert capsys.readouterr().out == f"0 fetched, 2 already cached in {cache}\n"
