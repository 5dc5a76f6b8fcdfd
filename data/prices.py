"""The tidy price frame every source returns, and its validation.

A tidy frame has the columns ``COLUMNS``: one row per ticker and trading day,
sorted by ticker then date. Open, high, low and close are split- and
dividend-adjusted (multiplied by ``adj_close / close`` of the raw row), so that
after ``tidy`` the close equals ``adj_close`` and the range ``high / low`` is
unchanged. Volume is left as reported. Only a date and a close are required:
open, high, low and volume are NaN throughout where a source has no such
column (features that read them refuse such prices: ``data.features``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from latentcast.errors import DataError

COLUMNS = ("ticker", "date", "open", "high", "low", "close", "adj_close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close", "adj_close")
REQUIRED = ("date", "close")
OPTIONAL = ("open", "high", "low", "volume")


def normalise_columns(frame: pd.DataFrame, origin: str, ticker: str | None = None) -> pd.DataFrame:
    """Rename columns to the tidy names, case- and spacing-insensitively.

    ``Adj Close``, ``adj close`` and ``AdjClose`` all become ``adj_close``. A
    missing ``adj_close`` is taken to mean the prices are already adjusted; a
    missing ``ticker`` column is filled with ``ticker`` when one is given; a
    missing open, high, low or volume column is filled with NaN.
    Raises ``DataError`` naming the missing required columns.
    """
    renamed = frame.rename(columns=lambda c: canonical_name(str(c)))
    if "ticker" not in renamed.columns and ticker is not None:
        renamed.insert(0, "ticker", ticker)
    dupes = sorted({c for c in renamed.columns if list(renamed.columns).count(c) > 1})
    if dupes:
        raise DataError(f"{origin}: columns {', '.join(dupes)} appear more than once")
    missing = [c for c in ("ticker", *REQUIRED) if c not in renamed.columns]
    if missing:
        found = ", ".join(str(c) for c in frame.columns)
        raise DataError(f"{origin}: missing columns {', '.join(missing)} (found: {found})")
    if "adj_close" not in renamed.columns:
        renamed["adj_close"] = renamed["close"]
    for column in OPTIONAL:
        if column not in renamed.columns:
            renamed[column] = np.nan
    return renamed


def canonical_name(name: str) -> str:
    key = "".join(ch for ch in name.strip().lower() if ch.isalnum())
    return {"adjclose": "adj_close", "adjustedclose": "adj_close", "symbol": "ticker"}.get(key, key)


def tidy(frame: pd.DataFrame, origin: str, *, row_label: str = "row", ticker: str | None = None) -> pd.DataFrame:
    """Validate a frame with the tidy columns and return it adjusted and sorted.

    ``frame.index`` labels name the rows in error messages (a CSV loader sets
    them to file line numbers with ``row_label="line"``). Dates must be in
    ascending order within each ticker: a descending file is an error, not
    something silently reordered. ``ticker`` fills a missing ticker column.
    """
    if not frame.index.is_unique:
        frame = frame.reset_index(drop=True)
    frame = normalise_columns(frame, origin, ticker)
    given = {c for c in OPTIONAL if frame[c].notna().any()}
    if frame.empty:
        raise DataError(f"{origin}: no rows")
    frame = frame.assign(
        ticker=frame["ticker"].astype(str).str.strip().str.upper(),
        date=_parse_dates(frame, origin, row_label),
    )
    for column in (*PRICE_COLUMNS, "volume"):
        frame[column] = _parse_numbers(frame, column, origin, row_label)
    _check_values(frame, origin, row_label, given)
    _check_dates(frame, origin, row_label)
    factor = frame["adj_close"] / frame["close"]
    for column in ("open", "high", "low", "close"):
        frame[column] = frame[column] * factor
    tidy_frame = frame.loc[:, list(COLUMNS)].sort_values(["ticker", "date"], kind="stable")
    return tidy_frame.reset_index(drop=True).rename_axis(None, axis=1)


def _where(frame: pd.DataFrame, position: int, origin: str, row_label: str) -> str:
    row = frame.iloc[position]
    date = row["date"]
    day = date.date().isoformat() if isinstance(date, pd.Timestamp) else str(date)
    return f"{origin}: {row['ticker']} {row_label} {frame.index[position]} ({day})"


def _parse_dates(frame: pd.DataFrame, origin: str, row_label: str) -> pd.Series:
    raw = frame["date"]
    parsed = pd.to_datetime(raw, errors="coerce", format="mixed")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    bad = parsed.isna().to_numpy()
    if bad.any():
        position = int(np.argmax(bad))
        ticker, value = frame["ticker"].iloc[position], raw.iloc[position]
        raise DataError(f"{origin}: {ticker} {row_label} {frame.index[position]}: date {value!r} is not a date")
    return parsed.dt.normalize()


def _parse_numbers(frame: pd.DataFrame, column: str, origin: str, row_label: str) -> pd.Series:
    raw = frame[column]
    parsed = pd.to_numeric(raw, errors="coerce").astype("float64")
    bad = (parsed.isna() & raw.notna()).to_numpy()
    if bad.any():
        position = int(np.argmax(bad))
        where = _where(frame, position, origin, row_label)
        raise DataError(f"{where}: {column} {raw.iloc[position]!r} is not a number")
    return parsed


def _check_values(frame: pd.DataFrame, origin: str, row_label: str, given: set[str]) -> None:
    """The values of the required columns and of the optional ones ``given`` (not empty throughout)."""
    for column in PRICE_COLUMNS:
        if column in OPTIONAL and column not in given:
            continue
        values = frame[column].to_numpy()
        _first_bad(
            frame, ~np.isfinite(values), f"{column} is {{value}}; prices must be finite", column, origin, row_label
        )
        _first_bad(frame, values <= 0, f"{column} is {{value}}; prices must be positive", column, origin, row_label)
    if "volume" in given:
        volume = frame["volume"].to_numpy()
        message = "volume is {value}; volume must be finite"
        _first_bad(frame, ~np.isfinite(volume), message, "volume", origin, row_label)
        _first_bad(frame, volume < 0, "volume is {value}; volume must not be negative", "volume", origin, row_label)
    inverted = frame["high"].to_numpy() < frame["low"].to_numpy()
    if inverted.any():
        position = int(np.argmax(inverted))
        row = frame.iloc[position]
        where = _where(frame, position, origin, row_label)
        raise DataError(f"{where}: high {row['high']} is below low {row['low']}")


def _first_bad(frame: pd.DataFrame, mask: np.ndarray, message: str, column: str, origin: str, row_label: str) -> None:
    if mask.any():
        position = int(np.argmax(mask))
        value = frame[column].iloc[position]
        raise DataError(f"{_where(frame, position, origin, row_label)}: {message.format(value=value)}")


def _check_dates(frame: pd.DataFrame, origin: str, row_label: str) -> None:
    positions = pd.Series(np.arange(len(frame)), index=frame.index)
    for _, group in frame.groupby("ticker", sort=False):
        at = positions.loc[group.index].to_numpy()
        step = group["date"].diff().dt.days.to_numpy()[1:]
        if (step == 0).any():
            position = int(at[int(np.argmax(step == 0)) + 1])
            raise DataError(f"{_where(frame, position, origin, row_label)}: duplicate date")
        if (step < 0).any():
            k = int(np.argmax(step < 0)) + 1
            before = group["date"].iloc[k - 1]
            raise DataError(
                f"{_where(frame, int(at[k]), origin, row_label)}: dates not in ascending order "
                f"(comes after {before.date().isoformat()})"
            )
