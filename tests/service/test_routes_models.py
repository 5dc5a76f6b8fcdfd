"""The model routes: list, comparison report, reload; and the background poll of the registry."""

from __future__ import annotations

import json
import time

from fastapi.testclient import TestClient

from service.app import create_app
from tests.factories import tiny_checkpoint
from tests.service.conftest import MakeSettings
from training.registry import Registry


def test_models_lists_versions_metrics_and_champions(client: TestClient, registry: Registry):
    body = client.get("/v1/models").json()
    assert body["champions"] == {"ar": registry.champion("ar"), "latent": registry.champion("latent")}
    listed = {v["version"]: v for v in body["versions"]}
    assert set(listed) == {v.version for v in registry.versions()}
    champion = listed[registry.champion("latent")]
    assert (champion["mode"], champion["champion"], champion["loaded"]) == ("latent", True, True)
    assert champion["metrics"] == {"val_loss": 1.0} and champion["config"]["hidden_size"] == 8
    other = next(v for v in listed.values() if not v["champion"])
    assert other["loaded"] is False and other["config"]["n_features"] == 3


def test_compare_serves_the_latest_report_or_says_there_is_none(tmp_path, make_settings: MakeSettings):
    registry = Registry(tmp_path / "artifacts")
    registry.promote(registry.register(tiny_checkpoint("latent")).version)
    with TestClient(create_app(make_settings(artifacts=registry.root))) as client:
        missing = client.get("/v1/models/compare")
        report = registry.root / "reports" / "compare" / "report.json"
        backtest = registry.root / "reports" / "backtest" / "backtest.json"
        assert missing.status_code == 404
        assert missing.json()["error"] == {
            "code": "not_found",
            "message": f"no comparison report yet: neither {report} nor {backtest} exists "
            "(run `latentcast compare` or `latentcast backtest` first)",
        }
        report.parent.mkdir(parents=True)
        report.write_text(json.dumps({"winner": "latent", "mae_ratio": {"ar": 0.99, "latent": 0.97}}))
        assert client.get("/v1/models/compare").json() == {
            "winner": "latent",
            "mae_ratio": {"ar": 0.99, "latent": 0.97},
            "backtest": None,
        }
        backtest.parent.mkdir(parents=True)
        backtest.write_text(json.dumps({"diebold_mariano": [{"horizon": 1, "p_value": 0.4}]}))
        served = client.get("/v1/models/compare").json()
        assert served["winner"] == "latent" and served["backtest"]["diebold_mariano"][0]["p_value"] == 0.4
        backtest.write_text("{not json")
        unreadable = client.get("/v1/models/compare")
        assert unreadable.status_code == 503 and str(backtest) in unreadable.json()["error"]["message"]


def test_a_bad_new_champion_is_reported_and_the_old_one_keeps_serving(tmp_path, make_settings: MakeSettings, closes):
    registry = Registry(tmp_path / "artifacts")
    good = registry.register(tiny_checkpoint("latent")).version
    registry.promote(good)
    with TestClient(create_app(make_settings(artifacts=registry.root))) as client:
        bad = registry.register(tiny_checkpoint("latent", seed=3)).version
        registry.promote(bad)
        (registry.path(bad) / "config.json").write_text("{}")
        reloaded = client.post("/v1/models/reload").json()
        assert reloaded["champions"] == {"latent": good} and reloaded["changed"] == {}
        assert reloaded["failed"] == {
            "latent": f"version {bad}: config.json does not match its manifest (corrupt or tampered)"
        }
        assert client.post("/v1/forecast", json={"observations": closes[:5]}).json()["model"]["version"] == good
        assert client.get("/readyz").status_code == 200
        assert 'latentcast_model_reloads_total{result="failed"} 1.0' in client.get("/metrics").text


def test_the_registry_poll_picks_up_a_new_champion_without_a_request(tmp_path, make_settings: MakeSettings):
    registry = Registry(tmp_path / "artifacts")
    registry.promote(registry.register(tiny_checkpoint("latent")).version)
    with TestClient(create_app(make_settings(artifacts=registry.root, registry_poll_seconds=0.1))) as client:
        assert client.get("/readyz").json()["champions"] == {"latent": registry.champion("latent")}
        new = registry.register(tiny_checkpoint("ar")).version
        registry.promote(new)
        deadline = time.monotonic() + 10
        while "ar" not in client.get("/readyz").json()["champions"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get("/readyz").json()["champions"]["ar"] == new
