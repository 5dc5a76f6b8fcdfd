"""The bundled real prices: which tickers, over which days, and their bars for a chosen span.

So that a client (the page at ``/``, a demo, a test) can stream real prices
into sessions without a copy of its own.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query

from latentcast.errors import LimitError
from service.batching import in_thread
from service.http.dependencies import CallerDep, ServicesDep
from service.http.routes import error_responses
from service.http.schemas.operations import PricesResponse, TickersResponse
from service.http.schemas.requests import MAX_LABEL
from service.price_data import SOURCE, BundledPrices

router = APIRouter(prefix="/v1/data", tags=["data"])

# one copy per process: read at the first request, not at import (the app starts without it)
PRICES = BundledPrices()


@router.get(
    "/tickers",
    response_model=TickersResponse,
    summary="The bundled tickers and their spans",
    responses=error_responses(401),
)
async def tickers(_: CallerDep) -> dict[str, Any]:
    """Every ticker of the bundled real daily prices, with its first and last trading day."""
    spans = await in_thread(PRICES.tickers)
    return {"source": SOURCE, "tickers": [span.to_dict() for span in spans]}


@router.get(
    "/prices",
    response_model=PricesResponse,
    summary="Bundled bars of a ticker from a date",
    responses=error_responses(401, 404, 413, 422),
)
async def prices(
    svc: ServicesDep,
    _: CallerDep,
    ticker: Annotated[str, Query(min_length=1, max_length=MAX_LABEL, description="a ticker of GET /v1/data/tickers")],
    start: Annotated[dt.date, Query(description="ISO date: the first trading day on or after it starts the bars")],
    count: Annotated[int, Query(ge=1, description="bars from `start` (at most LATENTCAST_MAX_HISTORY)")],
    warmup: Annotated[
        int, Query(ge=0, description="also up to this many bars before `start`, to warm a session up")
    ] = 0,
) -> dict[str, Any]:
    """Up to `count` adjusted daily bars of `ticker` from the first trading day on or after
    `start`, and up to `warmup` bars before that day, each in the shape of an observation
    (fewer where the data ends or begins). 404 for an unknown ticker or a start after its
    last day."""
    bound = svc.settings.max_history
    for name, value in (("count", count), ("warmup", warmup)):
        if value > bound:
            raise LimitError(f"{name} is {value}; at most {bound} bars (LATENTCAST_MAX_HISTORY)", limit=bound)
    found = await in_thread(PRICES.prices, ticker, start, count, warmup)
    return {
        "ticker": found.ticker,
        "source": SOURCE,
        "warmup": [dataclasses.asdict(bar) for bar in found.warmup],
        "observations": [dataclasses.asdict(bar) for bar in found.observations],
    }
