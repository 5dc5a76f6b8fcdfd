"""The package's client against a real ``latentcast serve``: seqs tracked, lost replies retried safely, replay."""

from __future__ import annotations

import asyncio
import csv
from pathlib import Path

import httpx
import pytest
import redis
from latentcast_client import ApiError, AsyncClient, Client, ClientSettings, Item, Session

from data import sources
from models.series import Observation
from service import cli
from tests.service.test_e2e import assert_close, env
from tests.support.processes import ServiceProcess
from training.registry import Registry

# each test talks to a real latentcast serve process: the full tier runs them, make check does not
pytestmark = pytest.mark.slow

WARM = 20


class LosingReplies(httpx.AsyncBaseTransport):
    """Loopback HTTP losing every other reply to an append, after the service has answered (a timeout)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if not request.url.path.endswith("/observations"):
            return response
        self.requests += 1
        if self.requests % 2 == 0:
            await response.aread()
            raise httpx.ReadTimeout("reply lost", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture(scope="module")
def server(registry: Registry, tmp_path_factory: pytest.TempPathFactory):
    with ServiceProcess(env(registry), tmp_path_factory.mktemp("client") / "serve.log") as server:
        yield server


def offline(registry: Registry, version: str, closes: list[float]) -> dict:
    forecast = registry.predictor(version).forecast_history([Observation(close=c) for c in closes])
    assert forecast is not None
    return forecast.to_dict()


def test_lost_replies_are_retried_without_applying_a_batch_twice_or_skipping_one(server, registry, closes):
    async def stream() -> tuple[dict, list, int]:
        transport = LosingReplies()
        settings = ClientSettings(server.url, backoff_seconds=(0.001, 0.01))
        async with AsyncClient(settings, transport=transport) as http:
            session = await http.open(closes[:WARM])
            for seq in range(WARM, WARM + 20, 2):
                last = await http.append(session, closes[seq : seq + 2])
            others = [await http.open(closes[i : i + WARM]) for i in range(1, 4)]
            for seq in range(WARM, WARM + 6):
                many = await http.append_many([(s, [closes[i + 1 + seq]]) for i, s in enumerate(others)])
            return last, many, transport.requests

    last, many, requests = asyncio.run(stream())
    assert requests == 2 * (10 + 6) - 1  # every other reply lost (all but the first append), each sent again
    assert last["next_seq"] == WARM + 20
    assert_close(last["forecast"], offline(registry, last["model"]["version"], closes[: WARM + 20]))
    for i, reply in enumerate(many):
        assert isinstance(reply, dict) and reply["next_seq"] == WARM + 6
        assert_close(reply["forecast"], offline(registry, reply["model"]["version"], closes[i + 1 : i + 1 + WARM + 6]))


def test_the_blocking_client_tracks_seqs_and_reports_errors(server, registry, closes):
    with Client(ClientSettings(server.url)) as client:
        session = client.open(closes[:WARM], mode="latent")
        client.append(session, closes[WARM : WARM + 3])
        resumed = client.session(session.session_id)
        assert resumed.next_seq == WARM + 3
        with client.feed() as feed:
            [streamed] = feed.send([(resumed, [closes[WARM + 3]])])
        assert isinstance(streamed, dict) and streamed["next_seq"] == WARM + 4
        stale = client.append_many([(session, [closes[WARM + 3]])])  # session still says WARM + 3: a retry
        assert isinstance(stale[0], dict) and stale[0]["next_seq"] == WARM + 4
        [alone, bad] = client.forecast_many([closes[:30], [closes[0], -1.0]])
        assert isinstance(alone, dict) and isinstance(bad, ApiError) and bad.status == 422
        assert alone["model"] == client.forecast(closes[:30])["model"]
        with pytest.raises(ApiError) as gap:
            client.append(resumed.__class__(session.session_id, WARM + 9, session.model), [closes[0]])
    assert gap.value.status == 409 and gap.value.details["expected_seq"] == WARM + 4


def test_a_client_session_knows_how_many_prices_it_needs_before_its_first_forecast(server, registry, closes):
    needed = registry.load(str(registry.champion("ar")))["config"]["window"] + 1
    with Client(ClientSettings(server.url)) as client:
        session = client.open(closes[:5], mode="ar")
        assert (session.forecast, session.needs) == (None, needed - 5)
        client.append(session, closes[5 : needed - 1])
        assert (session.forecast, session.needs) == (None, 1)
        assert client.session(session.session_id).needs == 1
        client.append(session, [closes[needed - 1]])
        assert session.forecast is not None and session.needs == 0


@pytest.mark.parametrize("via", ["bulk", "stream"])
def test_items_sent_as_they_are_get_the_service_s_answers_and_move_no_session(server, closes, via):
    with Client(ClientSettings(server.url)) as client, client.feed() as feed:
        session = client.open(closes[:WARM])
        sid = session.session_id
        items = [
            Item(sid, WARM + 2, [closes[WARM]]),  # a gap
            Item(sid, WARM, closes[WARM : WARM + 2]),
            Item(sid, WARM, closes[WARM : WARM + 2]),  # a retry
            Item(sid, WARM + 1, [closes[WARM] * 1.01]),  # a rewrite
            Item(sid, WARM + 1, closes[WARM + 1 : WARM + 3]),  # an overlap going further
        ]
        got = client.append_items(items) if via == "bulk" else feed.send_items(items)
        assert session.next_seq == WARM  # moved by nothing sent as it is
    assert [r.status if isinstance(r, ApiError) else 200 for r in got] == [409, 200, 200, 409, 200]
    assert [r.details["expected_seq"] for r in got if isinstance(r, ApiError)] == [WARM, WARM + 2]
    assert [r["next_seq"] for r in got if isinstance(r, dict)] == [WARM + 2, WARM + 2, WARM + 3]
    assert got[1] == got[2]


@pytest.mark.parametrize("via", ["bulk", "stream"])
def test_replay_streams_a_csv_into_sessions_and_writes_the_forecasts(server, registry, tmp_path: Path, via):
    prices = sources.bundled(["IBM", "MSFT"])
    prices = prices[prices["date"] < prices["date"].min() + pd_days(60)]
    path = tmp_path / "prices.csv"
    prices.to_csv(path, index=False)
    out = tmp_path / "forecasts.csv"
    argv = ["replay", str(path), "--url", server.url, "--warm", str(WARM), "--via", via, "--out", str(out)]
    assert cli.main(argv) == 0
    with out.open() as file:
        rows = list(csv.DictReader(file))
    champion = registry.champion("latent")
    assert champion is not None
    for ticker in ("IBM", "MSFT"):
        mine = prices[prices["ticker"] == ticker]
        last = [r for r in rows if r["ticker"] == ticker and r["as_of_seq"] == str(len(mine) - 1)]
        assert [(r["horizon"], r["quantile"]) for r in last][:2] == [("1", "0.1"), ("1", "0.5")]
        want = offline(registry, champion, mine["adj_close"].tolist())
        assert float(last[1]["price"]) == pytest.approx(want["price"][0][1], rel=1e-4)
    dates = {r["date"] for r in rows}
    assert len(dates) == prices["date"].nunique() - WARM + 1


def pd_days(days: int):
    import pandas as pd

    return pd.Timedelta(days=days)


@pytest.mark.parametrize("window", [0, 8])
def test_appends_a_failover_lost_are_resent_from_the_kept_window(
    registry: Registry, closes, redis_server: str, redis_prefix: str, tmp_path: Path, window: int
):
    """The session's Redis hash rolled back to an earlier copy, as a promoted replica that missed the last appends."""
    settings = env(registry, store="redis", redis_url=redis_server, redis_prefix=redis_prefix)
    with (
        ServiceProcess(settings, tmp_path / "serve.log") as server,
        Client(ClientSettings(server.url, resend_window=window)) as client,
        redis.Redis.from_url(redis_server) as store,
    ):
        session = client.open(closes[:WARM])
        for seq in range(WARM, WARM + 3):
            client.append(session, [closes[seq]])
        key = f"{redis_prefix}:{{{session.session_id}}}"
        replica = store.dump(key)
        for seq in range(WARM + 3, WARM + 6):  # acknowledged, then lost with the master
            client.append(session, [closes[seq]])
        store.restore(key, store.pttl(key), replica, replace=True)
        if not window:  # nothing kept: the gap behind the session is the caller's to mend
            with pytest.raises(ApiError) as refused:
                client.append(session, [closes[WARM + 6]])
            assert refused.value.status == 409 and refused.value.details["expected_seq"] == WARM + 3
            return
        reply = client.append(session, [closes[WARM + 6]])
        served = client.session(session.session_id)
    assert reply["next_seq"] == session.next_seq == served.next_seq == WARM + 7
    assert_close(reply["forecast"], offline(registry, session.model["version"], closes[: WARM + 7]))


@pytest.mark.parametrize("window", [0, 8])
def test_a_bulk_append_mends_each_session_a_failover_rolled_back(
    registry: Registry, closes, redis_server: str, redis_prefix: str, tmp_path: Path, window: int
):
    """Of two sessions in one bulk append, one rolled back by three appends and sending two batches: only it is
    sent again, from its expected_seq, and both end equal to an offline replay."""
    settings = env(registry, store="redis", redis_url=redis_server, redis_prefix=redis_prefix)
    with (
        ServiceProcess(settings, tmp_path / "serve.log") as server,
        Client(ClientSettings(server.url, resend_window=window)) as client,
        redis.Redis.from_url(redis_server) as store,
    ):
        lost, kept = client.open(closes[:WARM]), client.open(closes[:WARM])
        for seq in range(WARM, WARM + 3):
            client.append_many([(lost, [closes[seq]]), (kept, [closes[seq]])])
        key = f"{redis_prefix}:{{{lost.session_id}}}"
        replica = store.dump(key)
        for seq in range(WARM + 3, WARM + 6):  # acknowledged, then lost with the master
            client.append_many([(lost, [closes[seq]]), (kept, [closes[seq]])])
        store.restore(key, store.pttl(key), replica, replace=True)
        batches = [(lost, [closes[WARM + 6]]), (kept, [closes[WARM + 6]]), (lost, [closes[WARM + 7]])]
        first, other, second = client.append_many(batches)
        served = {s.session_id: client.session(s.session_id).next_seq for s in (lost, kept)}
    assert isinstance(other, dict) and other["next_seq"] == kept.next_seq == WARM + 7
    assert_close(other["forecast"], offline(registry, kept.model["version"], closes[: WARM + 7]))
    if not window:  # nothing kept: the gap behind the session is the caller's to mend
        refused = [r for r in (first, second) if isinstance(r, ApiError)]
        assert [(r.status, r.details["expected_seq"]) for r in refused] == [(409, WARM + 3)] * 2
        assert lost.next_seq == WARM + 6 and served[lost.session_id] == WARM + 3
        return
    assert isinstance(first, dict) and isinstance(second, dict)
    assert (first["next_seq"], second["next_seq"]) == (WARM + 7, WARM + 8)
    assert lost.next_seq == served[lost.session_id] == WARM + 8
    assert_close(second["forecast"], offline(registry, lost.model["version"], closes[: WARM + 8]))


def test_a_batch_applied_before_its_replies_were_dropped_is_done_for_the_client(server, closes):
    """Past the replies a session keeps (8 by default), a batch sent again with the values applied at its
    seqs is ``already_applied``: the client counts it done and moves the session past it."""
    with Client(ClientSettings(server.url)) as client:
        session = client.open(closes[:WARM])
        for seq in range(WARM, WARM + 10):
            client.append(session, [closes[seq]])
        model = session.model

        def stale() -> Session:
            return Session(session.session_id, WARM, model)

        one = stale()
        alone = client.append(one, [closes[WARM]])
        many = stale()
        [bulk] = client.append_many([(many, [closes[WARM]])])
        streamed = stale()
        with client.feed() as feed:
            [fed] = feed.send([(streamed, [closes[WARM]])])
        changed = stale()
        [refused] = client.append_many([(changed, [closes[WARM] * 1.01])])
        assert client.session(session.session_id).next_seq == WARM + 10  # nothing applied twice
    for reply, moved in ((alone, one), (bulk, many), (fed, streamed)):
        assert reply == {
            "session_id": session.session_id,
            "model": model,
            "next_seq": WARM + 1,
            "forecast": None,
            "already_applied": True,
        }
        assert moved.next_seq == WARM + 1
    assert isinstance(refused, ApiError) and refused.details == {"expected_seq": WARM + 10, "reason": "conflict"}
    assert changed.next_seq == WARM
