"""The page's live quality panel in a real headless Chromium against a real ``latentcast serve`` with shadows.

The server and browser are those of ``tests/service/test_page.py`` (its
service runs every session with a shadow). Sessions streamed here through the
API settle forecasts; the panel must show each champion's figures exactly as
``GET /v1/models/live`` gives them, the last retrain started on drift with its
reason, and a sentence per pair and horizon of ``GET /v1/compare/live``.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page

from tests.service.test_page import KEY, START, TICKER, WAIT_MS, browser, open_page, playwright, server, use_key
from tests.support.processes import ServiceProcess
from training.jobs import JobReport, JobStore
from training.registry import Registry

# with a server and a browser to start, the module takes longer than a unit test should (docs/page.md)
pytestmark = pytest.mark.slow
__all__ = ["browser", "playwright", "server"]  # the fixtures, shared with the page's other tests


def stream(http: httpx.Client, mode: str, closes: list[float]) -> None:
    """A session of ``mode`` warmed on 11 closes, then given the rest one at a time, then closed."""
    opened = http.post("/v1/sessions", json={"mode": mode, "history": closes[:11]})
    assert opened.status_code == 201, opened.text
    session = opened.json()["session_id"]
    for seq, close in enumerate(closes[11:], start=11):
        reply = http.post(f"/v1/sessions/{session}/observations", json={"seq": seq, "observations": [close]})
        assert reply.status_code == 200, reply.text
    assert http.delete(f"/v1/sessions/{session}").status_code == 204


def live_shown(page: Page) -> dict[str, list[list[float | None]]]:
    """Per champion's version, its live table's rows: each cell's figure as the page holds it (data-value)."""
    tables = page.eval_on_selector_all(
        "#live-body table",
        "tables => tables.map(t => [t.dataset.version,"
        " [...t.tBodies[0].rows].map(r => [...r.cells].map(c => c.dataset.value))])",
    )
    return {version: [[float(x) if x else None for x in row] for row in rows] for version, rows in tables}


def live_expected(http: httpx.Client) -> dict[str, list[list[float | None]]]:
    """What the live panel must show, from the API's own reply: per champion, per horizon, its figures."""
    fields = ("horizon", "count", "pinball", "coverage", "kupiec_p", "mae_ratio", "since")
    models = http.get("/v1/models/live").json()["models"]
    return {m["version"]: [[h[f] for f in fields] for h in m["horizons"]] for m in models if m["champion"]}


def test_the_live_panel_shows_each_champions_live_scores_and_the_shadows_verdicts(
    browser: BrowserContext, server: ServiceProcess, registry: Registry
):
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}) as http:
        prices = http.get("/v1/data/prices", params={"ticker": TICKER, "start": START, "count": 40}).json()
        closes = [bar["close"] for bar in prices["observations"]]
        for mode in ("ar", "latent"):
            stream(http, mode, closes[:30])
        page, problems = open_page(browser, server)
        use_key(page, KEY)
        page.wait_for_selector("body[data-loaded=ok]", timeout=WAIT_MS)
        expected = live_expected(http)
        assert sorted(expected) == sorted(str(registry.champion(m)) for m in ("ar", "latent"))
        assert all((rows[0][1] or 0) > 0 for rows in expected.values())  # both settled forecasts
        assert live_shown(page) == expected
        # every pair and horizon of GET /v1/compare/live as a sentence with its verdict
        compare = http.get("/v1/compare/live").json()
        pairs = [
            (p["model"], p["shadow"], str(h["horizon"]), h["verdict"] or "")
            for p in compare["pairs"]
            for h in p["horizons"]
        ]
        assert {(m, s) for m, s, _, _ in pairs} == {
            (str(registry.champion("ar")), str(registry.champion("latent"))),
            (str(registry.champion("latent")), str(registry.champion("ar"))),
        }
        shown = page.eval_on_selector_all(
            "#live-body ul.live-verdicts li",
            "items => items.map(i => [i.dataset.model, i.dataset.shadow, i.dataset.horizon, i.dataset.verdict])",
        )
        assert [tuple(x) for x in shown] == pairs
        # Refresh reads them anew: more settled forecasts show at once
        before = {v: rows[0][1] or 0 for v, rows in expected.items()}
        stream(http, "latent", closes)
        page.click("#live-refresh")
        latent = str(registry.champion("latent"))
        page.wait_for_function(
            f"() => document.querySelector('#live-body table[data-version=\"{latent}\"] td.count')"
            f".dataset.value > {before[latent]}",
            timeout=WAIT_MS,
        )
        assert live_shown(page) == live_expected(http)
    assert problems.found == []


def test_the_live_panel_says_why_the_last_retrain_on_drift_started(
    browser: BrowserContext, server: ServiceProcess
) -> None:
    reason = "latent champion latent-1: its shadow ar-1 had a lower pinball loss on the 1-step forecasts both settled"
    job = JobReport(
        job_id="20261205T120000-dddddd", status="running", created="2026-12-05T12:00:00+00:00", reason=reason
    )
    JobStore(Path(server.env["LATENTCAST_ARTIFACTS"]) / "jobs").save(job)
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}) as http:
        assert http.get("/v1/models/live").json()["drift_retrain"]["reason"] == reason
    page, problems = open_page(browser, server)
    use_key(page, KEY)
    page.wait_for_selector("body[data-loaded=ok]", timeout=WAIT_MS)
    line = page.wait_for_selector("#live-body p.drift-retrain", timeout=WAIT_MS)
    assert line is not None
    assert (line.get_attribute("data-job"), line.get_attribute("data-reason")) == (job.job_id, reason)
    assert line.inner_text() == (
        f"Last retrain on drift: job {job.job_id}, queued 2026-12-05 12:00:00 UTC, running. Why: {reason}"
    )
    assert problems.found == []
