"""``latentcast serve`` starts uvicorn on the app factory, host and port from settings or flags."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from service import cli
from service.config import get_settings


@pytest.fixture
def runs(monkeypatch) -> Iterator[list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append({"app": app, **kwargs}))
    get_settings.cache_clear()
    yield calls
    get_settings.cache_clear()


def test_serve_defaults_to_the_settings(runs, monkeypatch):
    monkeypatch.setenv("LATENTCAST_PORT", "8765")
    monkeypatch.delenv("LATENTCAST_HOST", raising=False)
    assert cli.main(["serve"]) == 0
    assert runs == [
        {
            "app": "service.app:create_app",
            "factory": True,
            "host": "127.0.0.1",
            "port": 8765,
            "workers": 1,
            "log_level": "info",
        }
    ]


def test_flags_override_the_settings(runs):
    assert cli.main(["serve", "--host", "0.0.0.0", "--port", "9000"]) == 0
    assert (runs[0]["host"], runs[0]["port"]) == ("0.0.0.0", 9000)


def test_several_workers_need_the_redis_store(runs, monkeypatch, capsys):
    monkeypatch.setenv("LATENTCAST_STORE", "memory")
    assert cli.main(["serve", "--workers", "2"]) == 2
    assert runs == []
    assert capsys.readouterr().err == (
        "latentcast serve: error: several workers need LATENTCAST_STORE=redis: "
        "with the memory store each would hold its own sessions\n"
    )
    monkeypatch.setenv("LATENTCAST_STORE", "redis")
    get_settings.cache_clear()
    assert cli.main(["serve", "--workers", "2"]) == 0
    assert runs[0]["workers"] == 2
