"""Every input bound in Settings, at its value (accepted) and one past it (refused, with the setting named).

max_body_bytes        request body                     413
max_batch             observations in one append       413
max_history           warm-up history, stateless run   413
max_sessions_per_key  open sessions of one API key     429
max_horizon           forecast horizon of a model      refused at load (reload reports it, 503 if asked for)
max_quantiles         quantile levels of a model       refused at load
"""

from __future__ import annotations

import argparse
from typing import Any

import pytest
from fastapi.testclient import TestClient

from latentcast.errors import ConfigError
from service import cli
from service.cli.arguments import model_config
from service.config import Settings, get_settings
from service.http.app import create_app
from tests.factories import tiny_checkpoint
from tests.service.conftest import MakeSettings
from training.registry import Registry

JSON = {"content-type": "application/json"}
ALICE, BOB = "alice-key-0123456789", "bob-key-0123456789ab"
NINETEEN_LEVELS = ",".join(f"{0.05 * i:.2f}" for i in range(1, 20))  # 0.05, 0.10, ..., 0.95


def error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    return body


def padded(document: str, size: int) -> bytes:
    """``document`` with trailing spaces (valid JSON) to exactly ``size`` bytes."""
    raw = document.encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


def test_the_body_size_bound(make_settings: MakeSettings):
    with TestClient(create_app(make_settings(max_body_bytes=1024))) as client:
        at = client.post("/v1/forecast", content=padded('{"observations": [101.0, 102.0]}', 1024), headers=JSON)
        assert at.status_code == 200, at.text
        past = client.post("/v1/forecast", content=padded('{"observations": [101.0, 102.0]}', 1025), headers=JSON)
        assert error(past, 413) == {
            "code": "limit_exceeded",
            "message": "request body is 1025 bytes; the limit is 1024 bytes (LATENTCAST_MAX_BODY_BYTES)",
            "limit": 1024,
        }


def test_the_batch_bound(make_settings: MakeSettings, closes):
    with TestClient(create_app(make_settings(max_batch=4))) as client:
        session = client.post("/v1/sessions", json={"history": closes[:5]}).json()["session_id"]
        url = f"/v1/sessions/{session}/observations"
        past = client.post(url, json={"seq": 5, "observations": closes[5:10]})
        assert error(past, 413) == {
            "code": "limit_exceeded",
            "message": "batch has 5 observations; the limit is 4 (LATENTCAST_MAX_BATCH)",
            "limit": 4,
        }
        at = client.post(url, json={"seq": 5, "observations": closes[5:9]})
        assert at.status_code == 200 and at.json()["next_seq"] == 9  # the refused batch changed nothing


def test_the_history_bound(make_settings: MakeSettings, closes):
    with TestClient(create_app(make_settings(max_history=30))) as client:
        for url, key in (("/v1/sessions", "history"), ("/v1/forecast", "observations")):
            assert client.post(url, json={key: closes[:30]}).status_code in (200, 201)
            past = client.post(url, json={key: closes[:31]})
            assert error(past, 413) == {
                "code": "limit_exceeded",
                "message": f"{key} has 31 observations; the limit is 30 (LATENTCAST_MAX_HISTORY)",
                "limit": 30,
            }


def test_the_sessions_per_key_bound(make_settings: MakeSettings):
    settings = make_settings(api_keys=(ALICE, BOB), max_sessions_per_key=3, max_sessions=100)
    with TestClient(create_app(settings)) as client:
        alice, bob = {"X-API-Key": ALICE}, {"X-API-Key": BOB}
        opened = [client.post("/v1/sessions", headers=alice) for _ in range(3)]
        assert [r.status_code for r in opened] == [201, 201, 201]
        past = client.post("/v1/sessions", headers=alice)
        assert error(past, 429) == {
            "code": "quota_exceeded",
            "message": "this API key holds 3 open sessions, the most it may (LATENTCAST_MAX_SESSIONS_PER_KEY): "
            "delete one or let one expire",
            "limit": 3,
        }
        assert client.post("/v1/sessions", headers=bob).status_code == 201  # other keys are not held back
        assert client.delete(f"/v1/sessions/{opened[0].json()['session_id']}", headers=alice).status_code == 204
        assert client.post("/v1/sessions", headers=alice).status_code == 201


def test_without_keys_only_max_sessions_bounds_sessions(make_settings: MakeSettings):
    with TestClient(create_app(make_settings(max_sessions_per_key=2, max_sessions=5))) as client:
        assert [client.post("/v1/sessions").status_code for _ in range(6)] == [201] * 6


@pytest.fixture
def admin_client(tmp_path, make_settings: MakeSettings):
    registry = Registry(tmp_path / "artifacts")
    registry.promote(registry.register(tiny_checkpoint("latent", seed=1)).version)
    settings = make_settings(artifacts=registry.root, max_horizon=4, max_quantiles=5)
    with TestClient(create_app(settings)) as client:
        yield client, registry


@pytest.mark.parametrize(
    ("at", "past", "message"),
    [
        ({"horizon": 4}, {"horizon": 5}, "horizon 5 is over the limit of 4 (LATENTCAST_MAX_HORIZON)"),
        (
            {"quantiles": (0.1, 0.25, 0.5, 0.75, 0.9)},
            {"quantiles": (0.05, 0.1, 0.25, 0.5, 0.75, 0.9)},
            "6 quantile levels are over the limit of 5 (LATENTCAST_MAX_QUANTILES)",
        ),
    ],
)
def test_a_model_past_the_horizon_or_quantile_bound_is_refused_at_load(admin_client, at, past, message):
    client, registry = admin_client
    old = registry.champion("latent")
    large = registry.register(tiny_checkpoint("latent", seed=2, **past)).version
    registry.promote(large)
    reloaded = client.post("/v1/models/reload").json()
    assert reloaded["failed"] == {"latent": f"version {large}: {message}; it is not served"}
    assert reloaded["champions"] == {"latent": old}
    assert client.post("/v1/sessions", json={"history": [101.0, 102.0]}).json()["model"]["version"] == old
    pinned = client.post("/v1/sessions", json={"version": large})
    assert error(pinned, 503) == {
        "code": "invalid_checkpoint",
        "message": f"version {large}: {message}; it is not served",
    }

    fits = registry.register(tiny_checkpoint("latent", seed=3, **at)).version
    registry.promote(fits)
    assert client.post("/v1/models/reload").json()["changed"] == {"latent": fits}
    forecast = client.post("/v1/sessions", json={"history": [101.0, 102.0]}).json()["forecast"]
    expected = at.get("horizon", 3), len(at.get("quantiles", (0.1, 0.5, 0.9)))
    assert (len(forecast["horizons"]), len(forecast["quantiles"])) == expected


def cli_args(**values: Any) -> argparse.Namespace:
    defaults = {
        "features": "returns",
        "cell": "GRU",
        "hidden": 8,
        "layers": 1,
        "window": 10,
        "horizon": 5,
        "scaling": "volatility",
        "variance_source": "returns",
        "variance_scales": "",
        "quantile_scale": "main",
    }
    return argparse.Namespace(**{**defaults, "quantiles": "0.1,0.5,0.9", **values})


@pytest.fixture
def bounded_env(monkeypatch):
    monkeypatch.setenv("LATENTCAST_MAX_HORIZON", "20")
    monkeypatch.setenv("LATENTCAST_MAX_QUANTILES", "19")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_training_refuses_a_model_the_service_would_not_serve(bounded_env, capsys, tmp_path):
    assert model_config(cli_args(horizon=20), "latent").horizon == 20
    assert len(model_config(cli_args(quantiles=NINETEEN_LEVELS), "latent").quantiles) == 19
    with pytest.raises(ConfigError) as caught:
        model_config(cli_args(horizon=21), "ar")
    assert caught.value.message == (
        "horizon 21 is over the limit of 20 (LATENTCAST_MAX_HORIZON): the service would refuse this model"
    )
    twenty = NINETEEN_LEVELS + ",0.99"
    assert cli.main(["train", "--quantiles", twenty, "--artifacts", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "latentcast train: error: 20 quantile levels are over the limit of 19 (LATENTCAST_MAX_QUANTILES): "
        "the service would refuse this model\n"
    )
    assert cli.main(["retrain", "--horizon", "21", "--artifacts", str(tmp_path)]) == 2
    assert Registry(tmp_path).versions() == []


def test_the_default_bounds():
    settings = Settings()
    assert (settings.max_body_bytes, settings.max_batch, settings.max_history) == (1_048_576, 1000, 10_000)
    assert (settings.max_sessions_per_key, settings.max_horizon, settings.max_quantiles) == (1000, 60, 19)
