"""The bundled prices routes: tickers with their spans, bars from a date with a warm-up before it."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from data import sources
from service.http.app import create_app
from tests.factories import real_bars
from tests.service.conftest import MakeSettings

IBM_2005 = 1216  # IBM's row of 2005-01-03, its first trading day of 2005


def test_tickers_lists_every_bundled_ticker_with_its_span(client: TestClient):
    body = client.get("/v1/data/tickers").json()
    spans = sources.summary(sources.bundled())
    assert body["source"] == "bundled"
    assert body["tickers"] == [
        {"ticker": t, "first": row["first"].isoformat(), "last": row["last"].isoformat(), "rows": int(row["rows"])}
        for t, row in spans.iterrows()
    ]
    assert [t["ticker"] for t in body["tickers"]] == ["AAPL", "GOOG", "IBM", "MSFT"]


def test_prices_start_on_the_first_trading_day_on_or_after_start_with_the_warmup_before(client: TestClient):
    # 2005-01-01 is a Saturday: the bars start on Monday the 3rd
    params: dict[str, str | int] = {"ticker": "ibm", "start": "2005-01-01", "count": 3, "warmup": 2}
    body = client.get("/v1/data/prices", params=params).json()
    bars = [dataclasses.asdict(b) for b in real_bars("IBM", 5, start=IBM_2005 - 2)]
    assert body == {"ticker": "IBM", "source": "bundled", "warmup": bars[:2], "observations": bars[2:]}
    assert body["observations"][0]["time"] == "2005-01-03" and body["warmup"][-1]["time"] == "2004-12-31"


def test_prices_are_fewer_where_the_data_begins_or_ends(client: TestClient):
    end = client.get("/v1/data/prices", params={"ticker": "MSFT", "start": "2013-02-28", "count": 10}).json()
    assert [b["time"] for b in end["observations"]] == ["2013-02-28", "2013-03-01"] and end["warmup"] == []
    begin = client.get("/v1/data/prices", params={"ticker": "GOOG", "start": "1990-01-01", "count": 1, "warmup": 5})
    assert begin.json()["warmup"] == [] and begin.json()["observations"][0]["time"] == "2004-08-19"


def test_prices_refuse_what_they_cannot_serve_naming_it(make_settings: MakeSettings):
    with TestClient(create_app(make_settings(max_history=50))) as client:

        def error(**params: str | int) -> tuple[int, dict[str, Any]]:
            reply = client.get("/v1/data/prices", params=params)
            return reply.status_code, reply.json()["error"]

        assert error(ticker="TSLA", start="2005-01-03", count=5) == (
            404,
            {"code": "not_found", "message": "no bundled prices for 'TSLA'; bundled tickers: AAPL, GOOG, IBM, MSFT"},
        )
        assert error(ticker="IBM", start="2013-03-02", count=5) == (
            404,
            {"code": "not_found", "message": "IBM: no prices on or after 2013-03-02; its last day is 2013-03-01"},
        )
        assert error(ticker="IBM", start="2005-01-03", count=51) == (
            413,
            {"code": "limit_exceeded", "message": "count is 51; at most 50 bars (LATENTCAST_MAX_HISTORY)", "limit": 50},
        )
        assert error(ticker="IBM", start="2005-01-03", count=5, warmup=60)[1]["message"].startswith("warmup is 60;")
        status, body = error(ticker="IBM", start="2005-13-01", count=5)
        assert status == 422 and body["code"] == "invalid_request" and str(body["message"]).startswith("start: ")
        assert error(ticker="IBM", start="2005-01-03", count=0)[1]["message"] == (
            "count: Input should be greater than or equal to 1"
        )


def test_the_data_routes_need_a_key_when_keys_are_set(make_settings: MakeSettings):
    key = "data-client-key-0123"
    with TestClient(create_app(make_settings(api_keys=(key,)))) as client:
        assert client.get("/v1/data/tickers").status_code == 401
        params: dict[str, str | int] = {"ticker": "IBM", "start": "2005-01-03", "count": 1}
        assert client.get("/v1/data/prices", params=params).json()["error"]["message"] == (
            "missing API key: send it in the X-API-Key header"
        )
        assert client.get("/v1/data/prices", params=params, headers={"X-API-Key": key}).status_code == 200


def test_the_bars_served_stream_into_a_session_as_they_are(client: TestClient):
    body = client.get("/v1/data/prices", params={"ticker": "AAPL", "start": "2003-01-02", "count": 5, "warmup": 20})
    prices = body.json()
    opened = client.post("/v1/sessions", json={"mode": "latent", "history": prices["warmup"]}).json()
    reply = client.post(
        f"/v1/sessions/{opened['session_id']}/observations", json={"seq": 20, "observations": prices["observations"]}
    )
    history = prices["warmup"] + prices["observations"]
    stateless = client.post("/v1/forecast", json={"mode": "latent", "observations": history}).json()
    assert reply.status_code == 200
    assert reply.json()["forecast"]["as_of_seq"] == stateless["forecast"]["as_of_seq"] == 24
    np.testing.assert_allclose(reply.json()["forecast"]["price"], stateless["forecast"]["price"], rtol=1e-5)
