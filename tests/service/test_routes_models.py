"""The model routes: list, comparison report, reload; and the background poll of the registry."""

from __future__ import annotations

import json
import time

from fastapi.testclient import TestClient

from service.http.app import create_app
from tests.factories import tiny_checkpoint
from tests.service.conftest import MakeSettings
from training.jobs import JobReport, JobStore
from training.leases import Leases
from training.registry import Registry
from training.retention import RetentionPolicy, plan, prune


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
    assert champion["promoted"] is True and other["promoted"] is False  # a challenger, never promoted


def test_a_champion_replaced_is_listed_as_promoted_before(tmp_path, make_settings: MakeSettings):
    registry = Registry(tmp_path / "artifacts")
    first = registry.register(tiny_checkpoint("latent", seed=1)).version
    registry.promote(first)
    second = registry.register(tiny_checkpoint("latent", seed=2)).version
    registry.promote(second)
    with TestClient(create_app(make_settings(artifacts=registry.root))) as client:
        listed = {v["version"]: v for v in client.get("/v1/models").json()["versions"]}
    assert (listed[first]["champion"], listed[first]["promoted"]) == (False, True)
    assert (listed[second]["champion"], listed[second]["promoted"]) == (True, True)


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
            "message": "no comparison report yet: run `latentcast compare` to write reports/compare/report.json "
            "or `latentcast backtest` to write reports/backtest/backtest.json",
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
        assert unreadable.status_code == 503
        message = unreadable.json()["error"]["message"]
        assert "reports/backtest/backtest.json is unreadable" in message and str(tmp_path) not in message


def test_compare_plots_are_listed_and_served_and_nothing_else_is(tmp_path, make_settings: MakeSettings):
    registry = Registry(tmp_path / "artifacts")
    registry.promote(registry.register(tiny_checkpoint("latent")).version)
    with TestClient(create_app(make_settings(artifacts=registry.root))) as client:
        assert client.get("/v1/models/compare/plots").json() == {"plots": []}
        folder = registry.root / "reports" / "compare"
        folder.mkdir(parents=True)
        png = b"\x89PNG\r\n\x1a\n" + bytes(range(32))
        (folder / "cost_per_forecast.png").write_bytes(png)
        (folder / "forecast_vs_actual.png").write_bytes(png[::-1])
        (folder / "report.json").write_text("{}")
        assert client.get("/v1/models/compare/plots").json() == {
            "plots": ["cost_per_forecast.png", "forecast_vs_actual.png"]
        }
        served = client.get("/v1/models/compare/plots/cost_per_forecast.png")
        assert (served.status_code, served.headers["content-type"], served.content) == (200, "image/png", png)
        assert client.get("/v1/models/compare/plots/report.json").json()["error"]["code"] == "invalid_request"
        for name in ("..%2F..%2Fmodels.json", "..%2Freport.png", "missing.png"):
            missing = client.get(f"/v1/models/compare/plots/{name}")
            assert missing.status_code == 404, name
        assert missing.json()["error"]["message"] == (
            "no comparison plot 'missing.png'; GET /v1/models/compare/plots lists them"
        )


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
        ready = client.get("/readyz")
        assert ready.status_code == 200
        failing = ready.json()["failing"]["latent"]
        assert failing["version"] == bad and failing["failures"] == 1
        assert failing["reason"] == reloaded["failed"]["latent"]
        assert 0 < failing["retry_in_seconds"] <= 30
        metrics = client.get("/metrics").text
        assert 'latentcast_model_reloads_total{result="failed"} 1.0' in metrics
        assert f'latentcast_champion_load_failures{{mode="latent",version="{bad}"}} 1.0' in metrics
        # the good champion promoted again: nothing fails any more
        registry.promote(good)
        assert client.post("/v1/models/reload").json()["failed"] == {}
        assert "failing" not in client.get("/readyz").json()
        assert "latentcast_champion_load_failures{" not in client.get("/metrics").text


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


def test_a_broken_version_folder_is_flagged_and_the_healthy_ones_listed(tmp_path, make_settings: MakeSettings):
    registry = Registry(tmp_path / "artifacts")
    champion = registry.register(tiny_checkpoint("latent")).version
    registry.promote(champion)
    broken = registry.register(tiny_checkpoint("latent", seed=2)).version
    (registry.path(broken) / "manifest.json").unlink()
    with TestClient(create_app(make_settings(artifacts=registry.root))) as client:
        listed = client.get("/v1/models")
        assert listed.status_code == 200
        assert [v["version"] for v in listed.json()["versions"]] == [champion]
        assert listed.json()["broken"] == [{"version": broken, "reason": f"{broken}: manifest.json is missing"}]
        assert str(tmp_path) not in listed.text


def test_a_champion_pointer_to_another_mode_is_refused_and_the_old_champion_kept(
    tmp_path, make_settings: MakeSettings, closes
):
    registry = Registry(tmp_path / "artifacts")
    latent = registry.register(tiny_checkpoint("latent")).version
    ar = registry.register(tiny_checkpoint("ar")).version
    registry.promote(latent)
    registry.promote(ar)
    with TestClient(create_app(make_settings(artifacts=registry.root))) as client:
        (registry.root / "latent" / "champion.json").write_text(json.dumps({"version": ar}))
        reloaded = client.post("/v1/models/reload").json()
        assert reloaded["champions"] == {"ar": ar, "latent": latent} and reloaded["changed"] == {}
        assert reloaded["failed"] == {"latent": f"the latent champion pointer names {ar!r}, not a latent version"}
        opened = client.post("/v1/sessions", json={"mode": "latent", "history": closes[:3]})
        assert opened.status_code == 201 and opened.json()["model"] == {"mode": "latent", "version": latent}
        assert opened.json()["forecast"] is not None  # a latent model forecasts after 3 prices; ar would not
        assert client.get("/readyz").status_code == 200


def test_started_with_a_corrupt_champion_the_service_is_not_ready_and_says_which_mode(
    tmp_path, make_settings: MakeSettings, closes, caplog
):
    registry = Registry(tmp_path / "artifacts")
    ar = registry.register(tiny_checkpoint("ar")).version
    latent = registry.register(tiny_checkpoint("latent")).version
    registry.promote(ar)
    registry.promote(latent)
    (registry.path(latent) / "model.pt").write_bytes(b"truncated")
    reason = f"version {latent}: model.pt does not match its manifest (corrupt or tampered)"
    with TestClient(create_app(make_settings(artifacts=registry.root))) as client:
        assert f"no latent champion is served: {reason}; next try in 30 s" in caplog.messages
        assert not [m for m in caplog.messages if "champion None" in m]
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["error"] == {
            "code": "unavailable",
            "message": f"not every mode is served (latent: {reason})",
            "unserved": ["latent"],
        }
        refused = client.post("/v1/sessions", json={"mode": "latent", "history": closes[:3]})
        assert refused.status_code == 503
        assert refused.json()["error"]["message"] == f"no latent model is served: {reason}"
        served = client.post("/v1/forecast", json={"mode": "ar", "observations": closes[:100]})
        assert served.status_code == 200 and served.json()["model"]["version"] == ar
        # a good latent champion promoted later makes it ready
        fixed = registry.register(tiny_checkpoint("latent", seed=5)).version
        registry.promote(fixed)
        assert client.post("/v1/models/reload").json()["changed"] == {"latent": fixed}
        assert client.get("/readyz").status_code == 200


def test_a_serving_process_leases_the_versions_its_sessions_use_until_it_stops(
    tmp_path, make_settings: MakeSettings, closes
):
    registry = Registry(tmp_path / "artifacts")
    old = registry.register(tiny_checkpoint("latent")).version
    registry.promote(old)
    leases = Leases(registry.root)
    with TestClient(create_app(make_settings(artifacts=registry.root, registry_poll_seconds=0.1))) as client:
        assert leases.held() == {old}
        assert client.post("/v1/sessions", json={"mode": "latent", "history": closes[:3]}).status_code == 201
        new = registry.register(tiny_checkpoint("latent", seed=2)).version
        registry.promote(new)
        deadline = time.monotonic() + 10
        while leases.held() != {old, new} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert leases.held() == {old, new}  # the old champion: its session is pinned to it
        policy = RetentionPolicy(previous_champions=0, challenger_days=0)
        removed = prune(registry, plan(registry, policy, leases.held()))
        assert removed == [] and registry.predictor(old).version == old
    assert leases.held() == set()


def test_promotions_list_each_promotion_with_its_test_newest_first(tmp_path, make_settings: MakeSettings):
    registry = Registry(tmp_path / "artifacts")
    registry.promote(registry.register(tiny_checkpoint("latent")).version)
    store = JobStore(registry.root / "jobs")
    test = {"rule": "stale", "statistic": -0.4, "p_better": 0.34, "p_worse": 0.66, "days": 125}
    first = JobReport(job_id="20261101T223000-aaaaaa", status="succeeded", finished="2026-11-01T22:31:00+00:00")
    first.modes = [
        {
            "mode": "latent",
            "promoted": True,
            "champion_before": None,
            "champion_after": "v1",
            "reason": "no champion yet",
        },
        {"mode": "ar", "promoted": False, "champion_before": "a1", "champion_after": "a1", "reason": "kept"},
    ]
    second = JobReport(job_id="20261202T223000-bbbbbb", status="succeeded", finished="2026-12-02T22:31:00+00:00")
    second.modes = [
        {
            "mode": "latent",
            "promoted": True,
            "champion_before": "v1",
            "champion_after": "v2",
            "test": test,
            "reason": "r",
        }
    ]
    store.save(first)
    store.save(second)
    with TestClient(create_app(make_settings(artifacts=registry.root))) as client:
        body = client.get("/v1/models/promotions").json()
    assert body["promotions"] == [
        {
            "job_id": second.job_id,
            "finished": second.finished,
            "mode": "latent",
            "version": "v2",
            "replaced": "v1",
            "reason": "r",
            **test,
        },
        {
            "job_id": first.job_id,
            "finished": first.finished,
            "mode": "latent",
            "version": "v1",
            "replaced": None,
            "rule": "first",
            "statistic": None,
            "p_better": None,
            "p_worse": None,
            "days": None,
            "reason": "no champion yet",
        },
    ]
