"""The page at ``/`` in a real headless Chromium (Debian's) against a real ``latentcast serve``.

The browser is Playwright for Python driving ``/usr/bin/chromium``: Playwright
never downloads a browser here. The service runs with an API key, so the page
first meets a 401 (the key field), then streams 100 real prices into an ar and
a latent session. The figures the page shows are checked against figures
computed here from the API's own replies. Any ``console.error`` or uncaught
exception in the page fails the test; so does any failed request but the 401s
a test expects.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Playwright, ViewportSize, sync_playwright

from tests.support.processes import ROOT, ServiceProcess, debian_tool
from training.jobs import JobReport, JobStore
from training.registry import Registry
from training.report import LABELS

# with a server and a browser to start, the module takes longer than a unit test should (docs/page.md)
pytestmark = pytest.mark.slow

KEY = "page-client-key-0123"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
STREAMED = 100
TICKER, START = "IBM", "2005-01-03"
WAIT_MS = 30_000
PAUSE_MS = 600  # a paused replay sends nothing for this long (three prices at 5 a second)
# the methods whose pinball cell is in bold (the best) in a table of the comparison
BEST_PINBALL = """table => [...table.rows].filter(r => [...r.cells].some(c => c.classList.contains('best')
    && table.rows[0].cells[c.cellIndex].textContent === 'pinball (%)')).map(r => r.cells[0].textContent)"""
# the versions table's rows as (version, status)
VERSION_STATUSES = (
    "rows => rows.filter(r => r.cells.length > 3).map(r => [r.cells[0].textContent, r.cells[3].textContent])"
)

# a retrain job's report with one promotion, which the page lists with its test
PROMOTED = JobReport(
    job_id="20261202T223000-bbbbbb",
    status="succeeded",
    finished="2026-12-02T22:31:00+00:00",
    modes=[
        {
            "mode": "latent",
            "promoted": True,
            "champion_before": "latent-old",
            "champion_after": "latent-new",
            "test": {"rule": "better", "statistic": -2.345, "p_better": 0.0123, "p_worse": 0.9877, "days": 125},
        }
    ],
)

# Chromium logs each failed request as a console error: those the test means to cause are expected
EXPECTED_401 = "Failed to load resource: the server responded with a status of 401"


def challenger(registry: Registry) -> str:
    """The latent version never promoted."""
    return next(v.version for v in registry.versions("latent") if v.version != registry.champion("latent"))


@pytest.fixture(scope="module")
def server(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The service on a copy of the tiny champions, with the comparison report of docs/compare beside them."""
    folder = tmp_path_factory.mktemp("page")
    artifacts = folder / "artifacts"
    shutil.copytree(registry.root, artifacts)
    shutil.copytree(ROOT / "docs" / "compare", artifacts / "reports" / "compare", ignore=shutil.ignore_patterns("*.md"))
    # as if the report had scored the latent version that is not the champion: the page must say so
    report = artifacts / "reports" / "compare" / "report.json"
    body = json.loads(report.read_text())
    body["models"]["latent"]["version"] = challenger(registry)
    report.write_text(json.dumps(body))
    JobStore(artifacts / "jobs").save(PROMOTED)
    env = {
        "LATENTCAST_ARTIFACTS": str(artifacts),
        "LATENTCAST_REGISTRY_POLL_SECONDS": "0",
        "LATENTCAST_LOG_LEVEL": "warning",
        "LATENTCAST_API_KEYS": KEY,
        "LATENTCAST_SHADOW": "1",  # every session has a shadow: the live panel shows their verdicts
    }
    with ServiceProcess(env, folder / "serve.log") as server:
        yield server


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def browser(playwright: Playwright, tmp_path: Path) -> Iterator[BrowserContext]:
    """Debian's Chromium with a fresh profile in the test's folder."""
    binary = debian_tool("chromium", "chromium", "the page's browser tests")
    context = playwright.chromium.launch_persistent_context(
        tmp_path / "profile", executable_path=binary, args=ARGS, headless=True, viewport=DESKTOP
    )
    try:
        yield context
    finally:
        context.close()


class Problems:
    """Console errors and uncaught exceptions of a page, but the 401s the test expects."""

    def __init__(self, page: Page) -> None:
        self.found: list[str] = []
        self.expected_401 = 0
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.found.append(f"uncaught: {exc}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and message.text.startswith(EXPECTED_401):
            self.expected_401 += 1
        elif message.type in ("error", "assert"):
            self.found.append(f"console.{message.type}: {message.text}")


def open_page(browser: BrowserContext, server: ServiceProcess) -> tuple[Page, Problems]:
    page = browser.pages[0] if browser.pages else browser.new_page()
    problems = Problems(page)
    page.goto(server.url)
    # no key yet: the service answers 401 and the page says what to do
    page.wait_for_selector("body[data-loaded=error]", timeout=WAIT_MS)
    assert "The service needs a valid API key" in page.inner_text("#error")
    return page, problems


def use_key(page: Page, key: str) -> None:
    page.fill("#api-key", key)
    page.press("#api-key", "Enter")  # the key form submits from the keyboard


def test_the_page_streams_both_champions_and_shows_the_apis_coverage(
    browser: BrowserContext, server: ServiceProcess, registry: Registry, tmp_path: Path
):
    page, problems = open_page(browser, server)
    use_key(page, KEY)
    page.wait_for_selector("body[data-loaded=ok]", timeout=WAIT_MS)
    assert page.is_hidden("#error")
    assert page.input_value("#warmup") == "11"  # the tiny ar champion's window + 1
    statuses = dict(page.eval_on_selector_all("#versions tr", VERSION_STATUSES))
    assert statuses[registry.champion("latent")] == "champion"
    assert statuses[challenger(registry)] == "challenger, never promoted"
    # which models the comparison scored, against the champions now
    page.wait_for_selector("#compare-body .scored", timeout=WAIT_MS)
    assert page.inner_text("#compare-body .scored") == (
        "Scored here: ar: a model trained for this report, not a registered version; "
        f"latent: {challenger(registry)}, no longer the latent champion (now {registry.champion('latent')})."
    )
    # the promotion history: the job report's promotion with its rule and test
    cells = page.eval_on_selector_all("#promotions tbody td", "cells => cells.map(c => c.textContent)")
    assert cells == ["2026-12-02 22:31:00", "latent", "latent-new", "latent-old", "better", "-2.35", "0.0123", "125"]
    # the comparison of docs/compare: its pooled table (lowest pinball in bold) and its three plots, loaded
    page.wait_for_function(
        "() => [...document.querySelectorAll('#compare-body img')].filter(i => i.naturalWidth).length == 3"
    )
    report = json.loads((ROOT / "docs" / "compare" / "report.json").read_text())
    one_day = {m: v["pooled"]["h1"]["pinball"] for m, v in report["metrics"].items()}
    best = min((m for m in one_day if one_day[m] is not None), key=lambda m: one_day[m])
    assert page.eval_on_selector("#compare-body table", BEST_PINBALL) == [LABELS[best]]  # one day ahead
    # and each of its Diebold-Mariano tests as a sentence, as report.json words it
    tests = report["diebold_mariano"]
    shown = page.eval_on_selector_all("#compare-body ul.tests li", "items => items.map(i => i.textContent)")
    assert len(shown) == len(tests) and all(t["verdict"] in line for t, line in zip(tests, shown, strict=True))
    for mode in ("ar", "latent"):
        assert page.inner_text(f"#panel-{mode} .version") == registry.champion(mode)
    page.select_option("#ticker", TICKER)
    page.fill("#start", START)
    page.fill("#count", str(STREAMED))
    page.select_option("#speed", "0")
    page.click("#start-button")
    for mode in ("ar", "latent"):
        page.wait_for_selector(f"#panel-{mode} .band[data-points='{STREAMED}']", timeout=WAIT_MS)
    page.wait_for_selector("#replay[data-state=done]", timeout=WAIT_MS)
    page.screenshot(path=tmp_path / "page-1280x800.png")
    page.set_viewport_size(PHONE)
    page.screenshot(path=tmp_path / "page-phone.png", full_page=True)
    page.set_viewport_size(DESKTOP)
    page.screenshot(path=tmp_path / "page-full.png", full_page=True)

    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}) as http:
        prices = http.get(
            "/v1/data/prices", params={"ticker": TICKER, "start": START, "count": STREAMED, "warmup": 11}
        ).json()
        bars = prices["warmup"] + prices["observations"]
        closes = [bar["close"] for bar in bars]
        for mode in ("ar", "latent"):
            panel = f"#panel-{mode}"
            received = page.eval_on_selector_all(
                f"{panel} .log-body tr[data-seq]", "rows => rows.map(r => [Number(r.dataset.seq), r.dataset.price])"
            )
            assert [seq for seq, _ in received] == list(range(10, 11 + STREAMED))
            forecasts = {}
            for seq, price in received:
                reply = http.post("/v1/forecast", json={"mode": mode, "observations": bars[: seq + 1]}).json()
                np.testing.assert_allclose(json.loads(price), reply["forecast"]["price"], rtol=1e-4)
                forecasts[seq] = reply["forecast"]
            shown = page.eval_on_selector_all(
                f"{panel} td.coverage",
                "cells => cells.map(c => [c.dataset.h, c.dataset.n, c.dataset.coverage, c.textContent])",
            )
            pinballs = page.eval_on_selector_all(
                f"{panel} td.pinball", "cells => cells.map(c => [c.dataset.pinball, c.textContent])"
            )
            assert len(shown) == len(pinballs) == 3  # the tiny models' horizons
            for (h, n, coverage, text), (pinball, pinball_text) in zip(shown, pinballs, strict=True):
                want = scores(forecasts, closes, int(h))
                assert int(n) == want["n"] == STREAMED + 1 - int(h)
                assert float(coverage) == pytest.approx(want["coverage"], abs=1e-12)
                assert text == f"{want['coverage'] * 100:.1f}%"
                assert float(pinball) == pytest.approx(want["pinball"], rel=1e-4)
                assert pinball_text == f"{want['pinball'] * 100:.4f}"
            assert page.get_attribute(f"{panel} .latency", "data-count") == str(STREAMED)
    assert problems.found == []
    assert problems.expected_401 >= 1


def test_a_replay_pauses_resumes_and_stops_from_the_keyboard_and_closes_its_sessions(
    browser: BrowserContext, server: ServiceProcess
):
    page, problems = open_page(browser, server)
    use_key(page, KEY)
    page.wait_for_selector("body[data-loaded=ok]", timeout=WAIT_MS)
    page.select_option("#speed", "5")
    page.focus("#start-button")
    page.keyboard.press("Enter")
    received = "#panel-latent .log-body tr[data-seq]"
    page.wait_for_function(f"() => document.querySelectorAll('{received}').length >= 3", timeout=WAIT_MS)
    page.focus("#pause-button")
    page.keyboard.press("Enter")
    page.wait_for_selector("#replay[data-state=paused]")
    assert page.inner_text("#pause-button") == "Resume"
    paused_at = len(page.query_selector_all(received))
    page.wait_for_timeout(PAUSE_MS)
    assert len(page.query_selector_all(received)) == paused_at
    page.keyboard.press("Enter")  # the focus stays on the button, now Resume
    page.wait_for_function(f"() => document.querySelectorAll('{received}').length > {paused_at}", timeout=WAIT_MS)
    page.focus("#stop-button")
    page.keyboard.press("Enter")
    page.wait_for_selector("#replay[data-state=idle]", timeout=WAIT_MS)
    assert page.inner_text("#replay-status").endswith("stopped.")
    assert page.is_enabled("#start-button") and page.is_disabled("#pause-button")
    assert "latentcast_sessions_open 0.0" in httpx.get(f"{server.url}/metrics").text
    assert problems.found == []


def test_a_wrong_key_shows_the_services_error_in_plain_words(browser: BrowserContext, server: ServiceProcess):
    page, problems = open_page(browser, server)
    use_key(page, "not-the-key-0123456789")
    page.wait_for_function("() => document.querySelector('#error').textContent.includes('unknown API key')")
    assert page.inner_text("#error") == (
        "The service needs a valid API key (unknown API key). Enter your key above and press Use key."
    )
    page.click("#start-button")  # nothing can load with that key, and the replay says so too
    page.wait_for_function("() => document.querySelector('#replay-status').textContent.includes('error')")
    assert "unknown API key" in page.inner_text("#error")
    page.check("input[name=source][value=csv]")
    page.fill("#csv-text", "date,close\n2024-01-02,101.5\n2024-01-03,abc\n")
    page.click("#start-button")
    page.wait_for_function("() => document.querySelector('#error').textContent.includes('line 3')")
    assert page.inner_text("#error") == 'The replay failed: line 3: "abc" is not a positive price'
    assert problems.found == []


def scores(forecasts: dict[int, dict[str, Any]], closes: list[float], h: int) -> dict[str, Any]:
    """Coverage of the outer interval and mean pinball loss at horizon ``h``, as docs/page.md defines them."""
    inside, losses = [], []
    for seq, forecast in forecasts.items():
        if seq + h >= len(closes):
            continue
        actual, levels = closes[seq + h], forecast["quantiles"]
        low, high = forecast["price"][h - 1][0], forecast["price"][h - 1][-1]
        inside.append(low <= actual <= high)
        y = math.log(actual / closes[seq])
        errors = [y - q for q in forecast["log_return"][h - 1]]
        losses.append(sum(max(t * e, (t - 1) * e) for t, e in zip(levels, errors, strict=True)) / len(levels))
    return {"n": len(inside), "coverage": sum(inside) / len(inside), "pinball": sum(losses) / len(losses)}


def test_a_session_without_a_forecast_yet_shows_how_many_prices_it_needs(
    browser: BrowserContext, server: ServiceProcess, registry: Registry
):
    needed = registry.load(str(registry.champion("ar")))["config"]["window"] + 1
    page, problems = open_page(browser, server)
    use_key(page, KEY)
    page.wait_for_selector("body[data-loaded=ok]", timeout=WAIT_MS)
    page.select_option("#ticker", TICKER)
    page.fill("#start", START)
    page.fill("#warmup", "5")
    page.fill("#count", "3")
    page.select_option("#speed", "0")
    page.click("#start-button")
    page.wait_for_selector("#replay[data-state=done]", timeout=WAIT_MS)
    # 5 + 3 prices: the ar session still needs the rest of its window, the latent one forecasts
    assert page.inner_text("#panel-ar .needs") == f"needs {needed - 8} more prices before its first forecast"
    assert page.is_hidden("#panel-latent .needs")
    assert problems.found == []
