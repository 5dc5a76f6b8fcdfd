"""``replay``, blocking, against the service's recorded replies: a session per ticker, each date in one request."""

from __future__ import annotations

import csv
import io

from latentcast_client import Client, ClientSettings
from latentcast_client.replay import ROW_FIELDS, ReplayPlan, replay, write_rows
from recorded import RecordedHttp, recording


def bars() -> dict[str, list[dict[str, object]]]:
    """The bars the recording's requests carry, each ticker's in order."""
    http = recording("replay")["http"]
    by_ticker = {body["ticker"]: list(body["history"]) for body in (e["request"]["body"] for e in http[:2])}
    for exchange in http[2:]:
        for item, ticker in zip(exchange["request"]["body"]["items"], by_ticker, strict=True):
            by_ticker[ticker] += item["observations"]
    return by_ticker


def test_replay_streams_each_date_in_one_request_and_writes_a_row_per_horizon_and_quantile() -> None:
    transport = RecordedHttp("replay")
    with Client(ClientSettings("http://recorded"), transport=transport) as client:
        out = io.StringIO()
        count = write_rows(replay(client, bars(), ReplayPlan(warm=3)), out)
    assert transport.done()
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == ROW_FIELDS and len(rows) == count == 6 * 3 * 3  # forecasts x horizons x quantiles
    last = recording("replay")["http"][3]["response"]["body"]["items"][1]["reply"]["forecast"]
    assert rows[-1]["ticker"] == "MSFT" and rows[-1]["date"] == "2024-01-06" and rows[-1]["close"] == "28.3"
    assert float(rows[-1]["price"]) == last["price"][-1][-1] and int(rows[-1]["as_of_seq"]) == 4
