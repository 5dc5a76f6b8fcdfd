"""Settings come from LATENTCAST_* variables, with every default in one place."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from latentcast.errors import ConfigError
from service.config import Settings, get_settings


def test_defaults_serve_on_loopback_with_the_memory_store(monkeypatch):
    for name in list(os.environ):
        if name.startswith("LATENTCAST_"):
            monkeypatch.delenv(name)
    settings = Settings()
    assert (settings.host, settings.port, settings.store) == ("127.0.0.1", 8000, "memory")
    assert settings.artifacts == Path("artifacts")
    assert settings.api_keys == () and settings.admin_key is None and not settings.auth_enabled
    assert settings.retained_observations == 1000 and settings.max_batch == 1000


def test_values_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("LATENTCAST_STORE", "redis")
    monkeypatch.setenv("LATENTCAST_PORT", "9001")
    monkeypatch.setenv("LATENTCAST_API_KEYS", "client-key-aaaaaaaa, client-key-bbbbbbbb,")
    monkeypatch.setenv("LATENTCAST_ADMIN_KEY", "admin-key-cccccccc")
    monkeypatch.setenv("LATENTCAST_SESSION_TTL_SECONDS", "90")
    settings = Settings()
    assert settings.store == "redis" and settings.port == 9001 and settings.session_ttl_seconds == 90.0
    assert settings.api_keys == ("client-key-aaaaaaaa", "client-key-bbbbbbbb")
    assert settings.admin_key == "admin-key-cccccccc" and settings.auth_enabled


def test_an_admin_key_alone_turns_keys_on(monkeypatch):
    monkeypatch.setenv("LATENTCAST_ADMIN_KEY", "admin-key-cccccccc")
    monkeypatch.delenv("LATENTCAST_API_KEYS", raising=False)
    assert Settings().auth_enabled


def test_an_empty_admin_key_means_none(monkeypatch):
    monkeypatch.setenv("LATENTCAST_ADMIN_KEY", " ")
    assert Settings().admin_key is None


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LATENTCAST_STORE", "disk", "Input should be 'memory' or 'redis'"),
        ("LATENTCAST_MAX_BATCH", "0", "Input should be greater than or equal to 1"),
        ("LATENTCAST_API_KEYS", "short", "API keys must be at least 16 characters long"),
    ],
)
def test_bad_values_are_refused_with_the_reason(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_get_settings_reads_the_environment_once(monkeypatch):
    get_settings.cache_clear()
    monkeypatch.setenv("LATENTCAST_PORT", "8123")
    first = get_settings()
    monkeypatch.setenv("LATENTCAST_PORT", "8124")
    assert get_settings() is first and first.port == 8123
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LATENTCAST_API_KEYS", "good-key-0123456789,short-secret", "API keys must be at least 16 characters long"),
        ("LATENTCAST_ADMIN_KEY", "short-secret", "API keys must be at least 16 characters long"),
        ("LATENTCAST_PORT", "short-secret", "Input should be a valid integer, unable to parse string as an integer"),
    ],
)
def test_a_refused_setting_is_named_in_one_line_without_its_value(monkeypatch, name, value, message):
    get_settings.cache_clear()
    monkeypatch.setenv(name, value)
    try:
        with pytest.raises(ConfigError) as err:
            get_settings()
    finally:
        get_settings.cache_clear()
    assert str(err.value) == f"{name}: {message}"
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no chained error repeats it


@pytest.mark.slow
def test_latentcast_names_a_refused_key_setting_without_its_value(tmp_path):
    env = {**os.environ, "LATENTCAST_API_KEYS": "short-secret", "LATENTCAST_ARTIFACTS": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "latentcast serve: error: LATENTCAST_API_KEYS: API keys must be at least 16 characters long"
    )
    assert "short-secret" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
