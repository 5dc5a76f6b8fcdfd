from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.prices import COLUMNS, tidy
from latentcast.errors import DataError


def raw_frame(rows: int = 5, ticker: str = "ACME") -> pd.DataFrame:
    dates = pd.bdate_range("2020-01-01", periods=rows)
    close = np.linspace(100.0, 110.0, rows)
    return pd.DataFrame(
        {
            "Ticker": ticker,
            "Date": dates.strftime("%Y-%m-%d"),
            "Open": close - 1,
            "High": close + 2,
            "Low": close - 2,
            "Close": close,
            "Volume": 1000.0,
            "Adj Close": close / 2,
        }
    )


def test_tidy_names_sorts_and_adjusts_prices_by_adj_close_over_close():
    frame = tidy(raw_frame(), "t")
    assert list(frame.columns) == list(COLUMNS)
    assert frame["close"].tolist() == pytest.approx(frame["adj_close"].tolist())
    first = raw_frame().iloc[0]
    assert frame.loc[0, "high"] == pytest.approx(first["High"] / 2)
    assert frame.loc[0, "low"] == pytest.approx(first["Low"] / 2)
    assert frame.loc[0, "volume"] == 1000.0


def test_missing_adj_close_means_already_adjusted():
    frame = tidy(raw_frame().drop(columns=["Adj Close"]), "t")
    assert frame["adj_close"].tolist() == frame["close"].tolist()


def test_missing_required_columns_are_named():
    with pytest.raises(DataError) as err:
        tidy(raw_frame().drop(columns=["Date", "Close"]), "prices.csv")
    assert (
        str(err.value) == "prices.csv: missing columns date, close (found: Ticker, Open, High, Low, Volume, Adj Close)"
    )


def test_a_date_and_a_close_are_prices_the_rest_left_empty():
    frame = tidy(raw_frame()[["Date", "Close"]], "closes.csv", ticker="ACME")
    assert frame["close"].tolist() == pytest.approx(np.linspace(100.0, 110.0, 5).tolist())
    assert frame[["open", "high", "low", "volume"]].isna().all().all()
    with pytest.raises(DataError, match=r"closes.csv: ACME row 1 \(2020-01-02\): close is -1.0"):
        tidy(raw_frame()[["Date", "Close"]].assign(Close=[1.0, -1.0, 1.0, 1.0, 1.0]), "closes.csv", ticker="ACME")


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("Close", np.nan, "t: ACME row 2 (2020-01-03): close is nan; prices must be finite"),
        ("Open", np.inf, "t: ACME row 2 (2020-01-03): open is inf; prices must be finite"),
        ("Low", -1.0, "t: ACME row 2 (2020-01-03): low is -1.0; prices must be positive"),
        ("Adj Close", 0.0, "t: ACME row 2 (2020-01-03): adj_close is 0.0; prices must be positive"),
        ("Volume", -5.0, "t: ACME row 2 (2020-01-03): volume is -5.0; volume must not be negative"),
        ("Volume", np.nan, "t: ACME row 2 (2020-01-03): volume is nan; volume must be finite"),
        ("High", 1.0, "t: ACME row 2 (2020-01-03): high 1.0 is below low 103.0"),
    ],
)
def test_bad_values_name_ticker_row_date_and_problem(column, value, message):
    raw = raw_frame()
    raw.loc[2, column] = value
    with pytest.raises(DataError) as err:
        tidy(raw, "t")
    assert str(err.value) == message


def test_text_in_a_number_column_is_named():
    raw = raw_frame().astype({"Close": object})
    raw.loc[1, "Close"] = "n/a"
    with pytest.raises(DataError) as err:
        tidy(raw, "t")
    assert str(err.value) == "t: ACME row 1 (2020-01-02): close 'n/a' is not a number"


def test_unparseable_date_is_named():
    raw = raw_frame()
    raw.loc[3, "Date"] = "yesterday"
    with pytest.raises(DataError) as err:
        tidy(raw, "t")
    assert str(err.value) == "t: ACME row 3: date 'yesterday' is not a date"


def test_duplicate_date_is_an_error():
    raw = raw_frame()
    raw["Date"] = raw["Date"].iloc[[0, 1, 2, 2, 4]].to_numpy()
    with pytest.raises(DataError) as err:
        tidy(raw, "t")
    assert str(err.value) == "t: ACME row 3 (2020-01-03): duplicate date"


def test_unsorted_dates_are_an_error_not_reordered():
    raw = raw_frame()
    raw["Date"] = raw["Date"].iloc[[0, 2, 1, 3, 4]].to_numpy()
    with pytest.raises(DataError) as err:
        tidy(raw, "t")
    assert str(err.value) == "t: ACME row 2 (2020-01-02): dates not in ascending order (comes after 2020-01-03)"


def test_same_date_in_two_tickers_is_fine():
    frame = tidy(pd.concat([raw_frame(ticker="A"), raw_frame(ticker="B")], ignore_index=True), "t")
    assert frame.groupby("ticker").size().to_dict() == {"A": 5, "B": 5}


def test_no_rows_is_an_error():
    with pytest.raises(DataError) as err:
        tidy(raw_frame().iloc[:0], "empty.csv")
    assert str(err.value) == "empty.csv: no rows"
