"""Bounds before work: every list's length is checked on the parsed JSON, before any entry is validated.

Each body below holds one entry more than its bound, every entry invalid: the answer is the 413 of the
count, never the 422 that validating the entries would give.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from service.http.app import create_app
from tests.service.conftest import MakeSettings

BATCH, HISTORY, ITEMS = 5, 7, 3
BAD = "not a price"


@pytest.fixture
def small(make_settings: MakeSettings) -> Iterator[TestClient]:
    settings = make_settings(max_batch=BATCH, max_history=HISTORY, max_bulk_items=ITEMS)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def session(small: TestClient, closes: list[float]) -> str:
    session_id: str = small.post("/v1/sessions", json={"history": closes[:HISTORY]}).json()["session_id"]
    return session_id


def limit(response, message: str, bound: int) -> None:
    assert response.status_code == 413, response.text
    assert response.json() == {"error": {"code": "limit_exceeded", "message": message, "limit": bound}}


def test_single_bodies_are_counted_before_their_entries_are_validated(small: TestClient, session: str):
    limit(
        small.post("/v1/forecast", json={"observations": [BAD] * (HISTORY + 1)}),
        f"observations has {HISTORY + 1} observations; the limit is {HISTORY} (LATENTCAST_MAX_HISTORY)",
        HISTORY,
    )
    limit(
        small.post("/v1/sessions", json={"history": [BAD] * (HISTORY + 1)}),
        f"history has {HISTORY + 1} observations; the limit is {HISTORY} (LATENTCAST_MAX_HISTORY)",
        HISTORY,
    )
    limit(
        small.post(f"/v1/sessions/{session}/observations", json={"seq": "x", "observations": [BAD] * (BATCH + 1)}),
        f"batch has {BATCH + 1} observations; the limit is {BATCH} (LATENTCAST_MAX_BATCH)",
        BATCH,
    )


def test_bulk_bodies_count_their_items_first_then_each_item_s_observations(small: TestClient, session: str):
    message = f"{ITEMS + 1} items; the limit is {ITEMS} (LATENTCAST_MAX_BULK_ITEMS)"
    limit(small.post("/v1/observations", json={"items": [BAD] * (ITEMS + 1)}), message, ITEMS)
    limit(small.post("/v1/forecast", json={"items": [BAD] * (ITEMS + 1)}), message, ITEMS)

    over = {"session_id": session, "seq": 0, "observations": [BAD] * (BATCH + 1), "extra": 1}
    good = {"session_id": session, "seq": HISTORY, "observations": [101.0]}
    items = small.post("/v1/observations", json={"items": [over, good]}).json()["items"]
    assert items[0] == {
        "status": 413,
        "error": {
            "code": "limit_exceeded",
            "message": f"batch has {BATCH + 1} observations; the limit is {BATCH} (LATENTCAST_MAX_BATCH)",
            "limit": BATCH,
        },
    }
    assert items[1]["status"] == 200 and items[1]["reply"]["next_seq"] == HISTORY + 1

    items = small.post("/v1/forecast", json={"items": [{"observations": [BAD] * (HISTORY + 1)}]}).json()["items"]
    assert items[0]["status"] == 413 and items[0]["error"]["limit"] == HISTORY
