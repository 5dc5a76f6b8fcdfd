"""``GET /`` and its static files: served from the package, with a policy that keeps the page to itself."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from service.app import create_app
from service.routes.page import POLICY, STATIC
from tests.service.conftest import MakeSettings


def test_the_page_is_served_with_its_policy_and_without_a_key(make_settings: MakeSettings):
    with TestClient(create_app(make_settings(api_keys=("page-client-key-0123",)))) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == POLICY
        assert "script-src 'self'" in POLICY and "connect-src 'self'" in POLICY
        assert "<title>latentcast: ar and latent side by side</title>" in page.text
        assert client.get("/v1/models").status_code == 401  # the page's data still needs the key


def test_every_file_the_page_loads_is_served_from_the_package(client: TestClient):
    page = client.get("/").text
    loaded = set(re.findall(r'(?:src|href)="(/static/[^"]+)"', page))
    # the modules the entry module imports, and theirs
    modules = [path for path in loaded if path.endswith(".js")]
    while modules:
        source = (STATIC / modules.pop().removeprefix("/static/")).read_text()
        for name in re.findall(r'from "\./([a-z]+\.js)"', source):
            if f"/static/{name}" not in loaded:
                loaded.add(f"/static/{name}")
                modules.append(f"/static/{name}")
    assert loaded == {f"/static/{p.name}" for p in STATIC.iterdir() if p.name != "index.html"}
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for path in loaded:
        reply = client.get(path)
        assert reply.status_code == 200, path
        assert reply.headers["content-type"].startswith(types[path[path.rindex(".") :]]), path
        assert reply.content == (STATIC / path.removeprefix("/static/")).read_bytes()


def test_nothing_but_the_static_folder_is_served(client: TestClient):
    for path in ("/static/../routes/page.py", "/static/%2e%2e/config.py", "/static/missing.js"):
        assert client.get(path).status_code == 404, path
