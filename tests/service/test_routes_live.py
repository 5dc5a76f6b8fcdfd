"""``GET /v1/models/live``: settled forecasts scored once each, equal to the offline scores of the same forecasts."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.http.app import create_app
from tests.service.conftest import MakeSettings
from training.metrics import coverage, mae, mae_ratio, pinball

WARM = 20
LEVELS = np.array([0.1, 0.5, 0.9])


class Offline:
    """The forecasts a session answered, by the seq of the observation they were made after."""

    def __init__(self, closes: list[float]) -> None:
        self.closes = closes
        self.forecasts: dict[int, list[list[float]]] = {}

    def answered(self, reply: dict[str, Any]) -> None:
        forecast = reply["forecast"]
        if forecast is not None:
            self.forecasts[forecast["as_of_seq"]] = forecast["log_return"]

    def scores(self, seen: int) -> dict[int, dict[str, Any]]:
        """Per horizon, the offline metrics of the forecasts settled by the first ``seen`` observations."""
        out = {}
        for h in (1, 2, 3):
            settled = [(n, rows[h - 1]) for n, rows in sorted(self.forecasts.items()) if n + h < seen]
            actual = np.array([math.log(self.closes[n + h] / self.closes[n]) for n, _ in settled])
            quantiles = np.array([row for _, row in settled])
            median = quantiles[:, 1]
            out[h] = {
                "count": len(settled),
                "pinball": pinball(actual, quantiles, LEVELS),
                "coverage": coverage(actual, quantiles, LEVELS, (0.1, 0.9)),
                "mae": mae(actual, median),
                "mae_ratio": mae_ratio(actual, median),
            }
        return out


def live(client: TestClient) -> dict[int, dict[str, Any]]:
    reply = client.get("/v1/models/live")
    assert reply.status_code == 200, reply.text
    [model] = [m for m in reply.json()["models"] if m["mode"] == "latent"]
    return {row["horizon"]: row for row in model["horizons"]}


def assert_scores(shown: dict[int, dict[str, Any]], expected: dict[int, dict[str, Any]]) -> None:
    assert sorted(shown) == sorted(expected)
    for h, want in expected.items():
        assert shown[h]["count"] == want["count"], h
        for name in ("pinball", "coverage", "mae", "mae_ratio"):
            assert shown[h][name] == pytest.approx(want[name], rel=1e-12, abs=1e-15), (h, name)


def open_session(client: TestClient, closes: list[float], offline: Offline) -> str:
    reply = client.post("/v1/sessions", json={"mode": "latent", "history": closes[:WARM]})
    assert reply.status_code == 201, reply.text
    offline.answered(reply.json())
    return str(reply.json()["session_id"])


def append(client: TestClient, session_id: str, seq: int, closes: list[float]) -> dict[str, Any]:
    reply = client.post(f"/v1/sessions/{session_id}/observations", json={"seq": seq, "observations": closes})
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def feed(client: TestClient, session_id: str, closes: list[float], offline: Offline, start: int, end: int) -> None:
    """Appends from ``start`` to ``end``: one at a time and in batches, each retried, some overlapping."""
    seq, sizes = start, [1, 1, 3, 1, 2, 1]
    while seq < end:
        size = min(sizes[seq % len(sizes)], end - seq)
        batch = closes[seq : seq + size]
        reply = append(client, session_id, seq, batch)
        offline.answered(reply)
        assert append(client, session_id, seq, batch) == reply  # a retry: the stored reply, settling nothing
        seq += size
        if seq % 4 == 0 and seq < end:  # an overlap: its already applied head, then one new observation
            reply = append(client, session_id, seq - 2, closes[seq - 2 : seq + 1])
            offline.answered(reply)
            seq += 1


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_live_scores_equal_the_offline_scores_of_the_answered_forecasts(
    make_settings: MakeSettings, closes: list[float], store: str, request: pytest.FixtureRequest
) -> None:
    overrides: dict[str, Any] = {}
    if store == "redis":
        overrides = {
            "store": "redis",
            "redis_url": request.getfixturevalue("redis_server"),
            "redis_prefix": request.getfixturevalue("redis_prefix"),
        }
    offline = Offline(closes)
    with TestClient(create_app(make_settings(**overrides))) as client:
        assert client.get("/v1/models/live").json() == {"enabled": True, "models": [], "drift_retrain": None}
        session_id = open_session(client, closes, offline)
        feed(client, session_id, closes, offline, WARM, WARM + 40)
        shown = live(client)
        version = client.get("/v1/models/live").json()["models"][0]["version"]
        metrics = client.get("/metrics").text
    assert_scores(shown, offline.scores(WARM + 40))
    assert shown[1]["band"] == [0.1, 0.9] and shown[1]["expected_coverage"] == pytest.approx(0.8)
    assert 0 <= shown[1]["kupiec_p"] <= 1
    assert shown[1]["since"] is not None
    labels = f'{{horizon="1",mode="latent",version="{version}"}}'
    assert f"latentcast_live_settled_total{labels} {float(shown[1]['count'])}\n" in metrics
    assert f"latentcast_live_coverage{labels} {shown[1]['coverage']!r}\n" in metrics


def test_a_restart_on_redis_and_two_processes_on_one_redis_count_each_settled_forecast_once(
    make_settings: MakeSettings, closes: list[float], redis_server: str, redis_prefix: str
) -> None:
    settings = make_settings(store="redis", redis_url=redis_server, redis_prefix=redis_prefix)
    first, second = Offline(closes), Offline(closes)
    with TestClient(create_app(settings)) as one:
        a = open_session(one, closes, first)
        feed(one, a, closes, first, WARM, WARM + 12)
    # a restart: a new process on the same Redis retries the last batch, then goes on
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        assert append(one, a, WARM + 11, closes[WARM + 11 : WARM + 12])["next_seq"] == WARM + 12
        b = open_session(two, closes, second)
        for seq in range(WARM + 12, WARM + 24):
            first.answered(append(one if seq % 2 else two, a, seq, [closes[seq]]))
            second.answered(append(two if seq % 2 else one, b, seq - 12, [closes[seq - 12]]))
        shown_one, shown_two = live(one), live(two)
    assert shown_one == shown_two
    expected_a, expected_b = first.scores(WARM + 24), second.scores(WARM + 12)
    for h in (1, 2, 3):
        assert shown_one[h]["count"] == expected_a[h]["count"] + expected_b[h]["count"]


def test_scoring_off_keeps_no_sums(make_settings: MakeSettings, closes: list[float]) -> None:
    offline = Offline(closes)
    with TestClient(create_app(make_settings(live_scores=False))) as client:
        session_id = open_session(client, closes, offline)
        feed(client, session_id, closes, offline, WARM, WARM + 8)
        reply = client.get("/v1/models/live").json()
    assert reply == {"enabled": False, "models": [], "drift_retrain": None}


def test_bulk_appends_of_many_sessions_are_scored_as_single_appends(
    make_settings: MakeSettings, closes: list[float]
) -> None:
    sessions = 10  # a bulk request of 8 or more plans its usual appends as arrays
    offlines = [Offline(closes[i:]) for i in range(sessions)]
    with TestClient(create_app(make_settings())) as client:
        ids = [open_session(client, closes[i:], offlines[i]) for i in range(sessions)]
        for seq in range(WARM, WARM + 8):
            items = [{"session_id": s, "seq": seq, "observations": [closes[i + seq]]} for i, s in enumerate(ids)]
            for _ in range(2):  # the second is a retry of every item
                reply = client.post("/v1/observations", json={"items": items})
                assert [item["status"] for item in reply.json()["items"]] == [200] * sessions
            for offline, item in zip(offlines, reply.json()["items"], strict=True):
                offline.answered(item["reply"])
        shown = live(client)
    expected = [offline.scores(WARM + 8) for offline in offlines]
    for h in (1, 2, 3):
        assert shown[h]["count"] == sum(e[h]["count"] for e in expected)
        assert shown[h]["mae"] == pytest.approx(
            sum(e[h]["mae"] * e[h]["count"] for e in expected) / shown[h]["count"], rel=1e-12
        )


def test_two_processes_racing_with_the_same_batches_count_each_settled_forecast_once(
    make_settings: MakeSettings, closes: list[float], redis_server: str, redis_prefix: str
) -> None:
    settings = make_settings(store="redis", redis_url=redis_server, redis_prefix=redis_prefix)
    offline = Offline(closes)
    with (
        TestClient(create_app(settings)) as one,
        TestClient(create_app(settings)) as two,
        ThreadPoolExecutor(2) as pool,
    ):
        session_id = open_session(one, closes, offline)
        seq = WARM
        while seq < WARM + 16:
            batch = closes[seq : seq + (2 if seq % 5 == 0 else 1)]
            # both send it at once: one commits, the other loses the compare-and-set or finds it applied,
            # and is answered as a retry
            replies = list(pool.map(append, (one, two), repeat(session_id), repeat(seq), repeat(batch)))
            assert replies[0] == replies[1]
            offline.answered(replies[0])
            seq += len(batch)
        shown = live(two)
    assert_scores(shown, offline.scores(seq))
