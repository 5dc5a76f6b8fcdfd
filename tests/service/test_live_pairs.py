"""``GET /v1/compare/live`` averages the paired differences settled at the same observation time before testing."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.http.app import create_app
from service.live.pairs import PairedLosses, report
from service.stores.redis_live import decode_pair, encode_pair
from tests.service.conftest import MakeSettings
from tests.service.test_routes_live import WARM
from tests.service.test_shadows import redis_overrides
from training.significance import diebold_mariano

STREAMED = 30


def day(seq: int) -> str:
    return (date(2024, 1, 1) + timedelta(days=seq)).isoformat()


def stream(client: TestClient, closes: list[float], timed: bool) -> None:
    """A latent session warmed on ``WARM`` closes, then given the next ``STREAMED`` one at a time."""
    opened = client.post("/v1/sessions", json={"mode": "latent", "history": closes[:WARM]})
    assert opened.status_code == 201, opened.text
    session = opened.json()["session_id"]
    for seq in range(WARM, WARM + STREAMED):
        observation: Any = {"close": closes[seq], "time": day(seq)} if timed else closes[seq]
        reply = client.post(f"/v1/sessions/{session}/observations", json={"seq": seq, "observations": [observation]})
        assert reply.status_code == 200, reply.text


def horizons(client: TestClient) -> dict[int, dict[str, Any]]:
    [pair] = client.get("/v1/compare/live").json()["pairs"]
    return {row["horizon"]: row for row in pair["horizons"]}


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_sessions_settling_at_the_same_time_are_averaged_and_untimed_ones_are_independent(
    make_settings: MakeSettings, closes: list[float], store: str, request: pytest.FixtureRequest
) -> None:
    settings = make_settings(shadow=1.0, **redis_overrides(store, request))
    with TestClient(create_app(settings)) as client:
        stream(client, closes, timed=True)
        stream(client, closes, timed=True)  # the same times: each one settles twice
        timed = horizons(client)
        stream(client, closes, timed=False)
        mixed = horizons(client)
    for h, row in timed.items():
        assert row["sessions"] == "averaged per time"
        settled_at = {seq + h for seq in range(WARM - 1, WARM + STREAMED) if WARM <= seq + h < WARM + STREAMED}
        assert row["count"] == 2 * len(settled_at) and row["tested"] == len(settled_at)
    for h, row in mixed.items():  # some differences have no time: each is tested as one of a single stream
        assert row["sessions"] == "independent" and row["tested"] == row["count"] == 3 * timed[h]["count"] // 2


def test_the_test_runs_on_the_means_per_time_in_the_order_of_the_times() -> None:
    rng = np.random.default_rng(3)
    first, second = rng.standard_normal(40), rng.standard_normal(40)
    times: list[str | None] = [day(n) for n in range(40)]
    paired = PairedLosses()
    paired.add("latent-1", "ar-1", {1: list(second)}, 100, {1: list(reversed(times))})  # received out of order
    paired.add("latent-1", "ar-1", {1: list(first)}, 100, {1: times})
    [pair] = report(paired)
    [row] = pair["horizons"]
    means = (first + second[::-1]) / 2
    test = diebold_mariano(means, np.zeros(40), 1)
    assert row["sessions"] == "averaged per time" and row["tested"] == 40 and row["count"] == 80
    assert row["statistic"] == pytest.approx(test.statistic, rel=1e-12)
    assert row["p_value"] == pytest.approx(test.p_value, rel=1e-12)
    assert row["mean_difference"] == pytest.approx((first.sum() + second.sum()) / 80, rel=1e-12)
    paired.add("latent-1", "ar-1", {1: [0.5]}, 100)  # one without a time
    [row] = report(paired)[0]["horizons"]
    assert row["sessions"] == "independent" and row["tested"] == row["count"] == 81


def test_a_kept_difference_reads_back_with_its_time_or_without() -> None:
    assert decode_pair(encode_pair(-0.0012345678901234567, "2024-01-02T15:30:00Z")) == (
        -0.0012345678901234567,
        "2024-01-02T15:30:00Z",
    )
    assert decode_pair(encode_pair(1e-300, None)) == (1e-300, None)
    assert decode_pair("0.25") == (0.25, None)  # as kept before times were
