"""``GET /`` and its static files: served from the package, with a policy that keeps the page to itself."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from service.http.app import create_app
from service.http.middleware import NOTHING_POLICY
from service.http.middleware import PAGE_POLICY as POLICY
from service.http.routes.docs import REDOC_POLICY, SWAGGER_POLICY
from service.http.routes.page import STATIC
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
    # the reference pages' own files (docs.html, redoc.html, swagger-init.js) are /docs's and /redoc's
    theirs = {"index.html", "docs.html", "redoc.html", "swagger-init.js"}
    assert loaded == {f"/static/{p.name}" for p in STATIC.iterdir() if p.name not in theirs}
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for path in loaded:
        reply = client.get(path)
        assert reply.status_code == 200, path
        assert reply.headers["content-type"].startswith(types[path[path.rindex(".") :]]), path
        assert reply.content == (STATIC / path.removeprefix("/static/")).read_bytes()


def test_nothing_but_the_static_folder_is_served(client: TestClient):
    for path in ("/static/../routes/page.py", "/static/%2e%2e/config.py", "/static/missing.js"):
        assert client.get(path).status_code == 404, path


def test_every_html_and_static_response_carries_a_policy_and_nosniff(client: TestClient):
    for path in ("/", "/static/index.html"):  # the page, wherever it is read from: never framed, never run elsewhere
        reply = client.get(path)
        assert reply.headers["content-type"].startswith("text/html"), path
        assert reply.headers["content-security-policy"] == POLICY, path
        assert "frame-ancestors 'none'" in POLICY
        assert reply.headers["x-content-type-options"] == "nosniff", path
    for path in ("/static/app.js", "/static/style.css", "/static/favicon.svg", "/openapi.json", "/healthz"):
        reply = client.get(path)
        assert reply.headers["content-security-policy"] == NOTHING_POLICY, path
        assert reply.headers["x-content-type-options"] == "nosniff", path


def test_the_reference_pages_run_only_files_of_this_service(client: TestClient):
    for path, policy in (("/docs", SWAGGER_POLICY), ("/redoc", REDOC_POLICY)):
        reply = client.get(path)
        assert reply.headers["content-security-policy"] == policy
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert "http" not in reply.text  # no CDN: every file is this service's
        scripts = re.findall(r"<script([^>]*)>", reply.text)
        assert scripts and all('src="' in attributes for attributes in scripts)  # no inline script
        for name in re.findall(r'(?:src|href)="([^"]+)"', reply.text):
            asset = client.get(f"/{name}")
            assert asset.status_code == 200 and asset.content, name
            assert asset.headers["x-content-type-options"] == "nosniff", name
    assert "'unsafe-inline'" not in SWAGGER_POLICY and "script-src 'self';" in SWAGGER_POLICY
    # ReDoc writes its styles at run time and searches in a worker made from a blob: that much, no inline script
    assert (
        "script-src 'self';" in REDOC_POLICY
        and "'unsafe-inline'" not in REDOC_POLICY.split("script-src")[1].split(";")[0]
    )
