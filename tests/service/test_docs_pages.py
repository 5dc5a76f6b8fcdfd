"""``/docs`` and ``/redoc`` in a real headless Chromium (Debian's), offline, under their own policies.

Every request the pages make must stay on the service (any other is aborted and
fails the test), the pages must render every operation of the schema, and
nothing may be refused by their Content-Security-Policy but ReDoc's Redocly logo,
an image from Redocly's CDN that the page does without.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Route

from tests.service.test_e2e import env
from tests.service.test_page import browser, playwright  # noqa: F401 (fixtures)
from tests.support.processes import ServiceProcess
from training.registry import Registry

pytestmark = pytest.mark.slow

WAIT_MS = 30_000
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture(scope="module")
def server(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    with ServiceProcess(env(registry), tmp_path_factory.mktemp("docs") / "serve.log") as server:
        yield server


class Visit:
    """A page's requests that left the service (aborted), and its console errors."""

    def __init__(self, page: Page, server: ServiceProcess) -> None:
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.server = server
        page.route("**/*", self._route)
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _route(self, route: Route) -> None:
        if route.request.url.startswith(self.server.url + "/"):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()


def operations(server: ServiceProcess) -> list[str]:
    schema = httpx.get(f"{server.url}/openapi.json").json()
    return [op["summary"] for path in schema["paths"].values() for op in path.values() if "summary" in op]


def test_swagger_ui_renders_every_operation_offline_with_scripts_from_the_service_only(
    browser: BrowserContext,  # noqa: F811
    server: ServiceProcess,
    tmp_path: Path,
):
    page = browser.new_page()
    visit = Visit(page, server)
    page.goto(f"{server.url}/docs")
    page.wait_for_selector(".opblock", timeout=WAIT_MS)
    shown = page.locator(".opblock-summary-description").all_inner_texts()
    assert sorted(shown) == sorted(operations(server))
    assert visit.outside == [] and visit.errors == []


def test_redoc_renders_every_operation_offline_and_only_its_logo_is_refused(
    browser: BrowserContext,  # noqa: F811
    server: ServiceProcess,
):
    page = browser.new_page()
    visit = Visit(page, server)
    page.goto(f"{server.url}/redoc")
    page.wait_for_selector("h2:has-text('Append observations, get the next forecast')", timeout=WAIT_MS)
    text = page.inner_text("body")
    assert all(summary in text for summary in operations(server))
    assert visit.outside == []
    assert all(REDOCLY_LOGO in error for error in visit.errors), visit.errors
