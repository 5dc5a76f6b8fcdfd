"""``RequestGuard``'s ``HEAD``: every ``GET`` route answers it, as its ``GET`` without the body."""

from __future__ import annotations

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount

from service.http.app import create_app
from tests.service.conftest import MakeSettings

KEY = "head-client-key-0123"


def test_every_get_route_answers_head_as_its_get_without_the_body(make_settings: MakeSettings, closes: list[float]):
    with TestClient(create_app(make_settings(api_keys=(KEY,)))) as client:
        client.headers["X-API-Key"] = KEY
        session = client.post("/v1/sessions", json={"history": closes[:10]}).json()["session_id"]
        values = {"session_id": session, "mode": "latent", "job_id": "none", "name": "none"}
        paths = [
            route.path.format(**values)
            for route in client.app.routes  # type: ignore[attr-defined]
            if isinstance(route, APIRoute) and "GET" in (route.methods or ())
        ]
        paths += [f"{route.path}/app.js" for route in client.app.routes if isinstance(route, Mount)]  # type: ignore[attr-defined]
        assert "/" in paths and "/healthz" in paths and f"/v1/sessions/{session}" in paths and "/static/app.js" in paths
        for path in paths:
            got, head = client.get(path), client.head(path)
            assert head.status_code == got.status_code, path
            assert head.content == b"", path
            for name in ("content-type", "content-security-policy", "x-content-type-options"):
                assert head.headers.get(name) == got.headers.get(name), (path, name)
            if "content-length" in got.headers and path != "/metrics":  # the metrics count this very request
                assert head.headers["content-length"] == got.headers["content-length"], path
        # HEAD is GET's: the key is needed as for GET, and a route without GET is 405
        assert client.head("/v1/models", headers={"X-API-Key": ""}).status_code == 401
        assert client.head("/v1/observations").status_code == 405
