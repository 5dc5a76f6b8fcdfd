"""Replay prices through the service: a session per ticker, the bars of each date sent together.

``latentcast replay`` runs this on a CSV of prices: each ticker's first
``warm`` bars open its session, then the dates follow in order, the bars of one
date sent as one bulk append (or one message of the WebSocket feed), and each
forecast is a row.
"""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from latentcast_client.errors import ApiError
from latentcast_client.protocol import Session, Wire
from latentcast_client.sync import Client

ROW_FIELDS = ("ticker", "date", "close", "as_of_seq", "horizon", "quantile", "log_return", "price")


@dataclass(frozen=True)
class ReplayPlan:
    """Which model the sessions open on, how many bars warm them, and which transport carries the rest."""

    warm: int = 50
    mode: str | None = None
    version: str | None = None
    via: str = "bulk"  # "bulk": one POST /v1/observations per date; "stream": one message of WS /v1/stream


def replay(
    client: Client, bars: Mapping[str, Sequence[Mapping[str, Any]]], plan: ReplayPlan
) -> Iterator[dict[str, Any]]:
    """The rows of every forecast made while ``bars`` (each ticker's, oldest first, each with its ``time``)
    stream into one session per ticker."""
    sessions: dict[str, Session] = {}
    for ticker, series in bars.items():
        sessions[ticker] = client.open(series[: plan.warm], plan.mode, plan.version, ticker)
        yield from rows(ticker, series[plan.warm - 1] if plan.warm else None, sessions[ticker].forecast)
    by_date: dict[str, list[tuple[str, Mapping[str, Any]]]] = {}
    for ticker, series in bars.items():
        for bar in series[plan.warm :]:
            by_date.setdefault(str(bar["time"]), []).append((ticker, bar))
    with client.feed() if plan.via == "stream" else contextlib.nullcontext() as feed:
        for date in sorted(by_date):
            batches = [(sessions[ticker], [bar]) for ticker, bar in by_date[date]]
            results = client.append_many(batches) if feed is None else feed.send(batches)
            for (ticker, bar), result in zip(by_date[date], results, strict=True):
                if isinstance(result, ApiError):
                    raise result
                yield from rows(ticker, bar, result["forecast"])


def rows(ticker: str, bar: Wire | None, forecast: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    """A forecast as rows, one per horizon and quantile; none while the session has too little history."""
    if forecast is None or not isinstance(bar, Mapping):
        return
    for h, horizon in enumerate(forecast["horizons"]):
        for q, quantile in enumerate(forecast["quantiles"]):
            yield {
                "ticker": ticker,
                "date": bar["time"],
                "close": bar["close"],
                "as_of_seq": forecast["as_of_seq"],
                "horizon": horizon,
                "quantile": quantile,
                "log_return": forecast["log_return"][h][q],
                "price": forecast["price"][h][q],
            }


def write_rows(rows: Iterator[dict[str, Any]], out: IO[str]) -> int:
    """Write ``rows`` as CSV; how many."""
    writer = csv.DictWriter(out, fieldnames=ROW_FIELDS)
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count
