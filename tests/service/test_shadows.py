"""Shadow models: the other mode's champion run beside a sampled session, scored live, never answered."""

from __future__ import annotations

import json
import math
import struct
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from latentcast.errors import StateError
from models.series import Observation, SeriesState
from service.http.app import create_app
from service.live.pairs import PairedLosses, report
from service.live.shadows import MAGIC, ONE_SHADOW_MAGIC, Shadow, pack, packed, sampled, unpack
from tests.factories import tiny_checkpoint
from tests.service.conftest import MakeSettings
from tests.service.test_routes_live import WARM, Offline, assert_scores, feed, open_session
from training.registry import Registry

END = WARM + 40


def redis_overrides(store: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if store == "memory":
        return {}
    return {
        "store": "redis",
        "redis_url": request.getfixturevalue("redis_server"),
        "redis_prefix": request.getfixturevalue("redis_prefix"),
    }


def live_models(client: TestClient) -> dict[str, dict[int, dict[str, Any]]]:
    """Per mode as shown ("latent", "ar/shadow"), its horizons."""
    models = client.get("/v1/models/live").json()["models"]
    return {m["mode"]: {row["horizon"]: row for row in m["horizons"]} for m in models}


def shadow_offline(registry: Registry, closes: list[float], origins: list[int]) -> Offline:
    """The ar champion's forecasts after each of ``origins``, made offline from the prices up to it."""
    version = registry.champion("ar")
    assert version is not None
    predictor = registry.predictor(version)
    offline = Offline(closes)
    for n in origins:
        state = predictor.advance(SeriesState(), [Observation(close=c) for c in closes[: n + 1]])
        forecast = predictor.forecast(state)
        assert forecast is not None
        offline.answered({"forecast": {"as_of_seq": n, "log_return": forecast.log_return}})
    return offline


def test_sampling_is_decided_by_the_session_id_alone() -> None:
    ids = [f"session-{i}" for i in range(2000)]
    assert [sampled(i, 0.3) for i in ids] == [sampled(i, 0.3) for i in ids]
    assert 0.25 < sum(sampled(i, 0.3) for i in ids) / len(ids) < 0.35
    assert not any(sampled(i, 0.0) for i in ids) and all(sampled(i, 1.0) for i in ids)
    # a larger fraction keeps every session a smaller one sampled
    assert all(sampled(i, 0.5) for i in ids if sampled(i, 0.3))


def test_shadows_pack_beside_the_issued_forecasts_and_bad_bytes_are_named() -> None:
    shadows = (Shadow("ar-1", b"state", b"issued"), Shadow("latent-2", b"", b"x"), Shadow("ar-3", b"s", b""))
    for kept in (shadows, shadows[:1], ()):
        assert unpack(pack(b"own", kept)) == (b"own", kept)
    assert pack(b"own", ()) == b"own"
    blob = pack(b"own", shadows)
    with pytest.raises(StateError, match="do not hold the 5 they name"):
        unpack(blob[:-1])
    with pytest.raises(StateError, match="hold 1 more than they name"):
        unpack(blob + b"!")
    with pytest.raises(StateError, match="names 4 shadows, at most 3"):
        unpack(blob[: len(MAGIC)] + struct.pack("<IB", 3, 4) + blob[len(MAGIC) + 5 :])


def test_a_record_of_the_one_shadow_format_still_reads() -> None:
    name, state, issued = b"ar-1", b"state", b"issued"
    old = (
        ONE_SHADOW_MAGIC + struct.pack("<IHII", 3, len(name), len(state), len(issued)) + b"own" + name + state + issued
    )
    assert packed(old) and packed(pack(b"own", [Shadow("ar-1", state, issued)])) and not packed(b"own")
    assert unpack(old) == (b"own", (Shadow("ar-1", state, issued),))
    with pytest.raises(StateError, match="does not hold"):
        unpack(old[:-1])


def test_a_shadow_never_changes_a_replys_bytes(make_settings: MakeSettings, closes: list[float]) -> None:
    bodies: list[list[bytes]] = []
    for fraction in (0.0, 1.0):
        with TestClient(create_app(make_settings(shadow=fraction))) as client:
            opened = client.post("/v1/sessions", json={"mode": "latent", "history": closes[:WARM]})
            session_id = opened.json()["session_id"]
            replies = [opened.content]
            for seq in range(WARM, WARM + 12, 2):
                body = {"seq": seq, "observations": closes[seq : seq + 2]}
                replies.append(client.post(f"/v1/sessions/{session_id}/observations", json=body).content)
            read = client.get(f"/v1/sessions/{session_id}").json()
            replies.append(json.dumps({k: v for k, v in read.items() if k not in ("created", "updated")}).encode())
            shadows = [mode for mode in live_models(client) if mode.endswith("/shadow")]
            assert shadows == ([] if fraction == 0 else ["ar/shadow"])
        bodies.append([reply.replace(session_id.encode(), b"<id>") for reply in replies])
    assert bodies[0] == bodies[1]


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_a_shadows_live_scores_equal_its_offline_scores_on_the_same_prices(
    make_settings: MakeSettings, closes: list[float], registry: Registry, store: str, request: pytest.FixtureRequest
) -> None:
    offline = Offline(closes)
    settings = make_settings(shadow=1.0, **redis_overrides(store, request))
    with TestClient(create_app(settings)) as client:
        session_id = open_session(client, closes, offline)
        feed(client, session_id, closes, offline, WARM, END)  # retries and overlaps, as the session's own test
        shown = live_models(client)
        compared = client.get("/v1/compare/live").json()
    assert_scores(shown["latent"], offline.scores(END))
    shadow = shadow_offline(registry, closes, sorted(offline.forecasts))
    expected = shadow.scores(END)
    for h, want in expected.items():
        assert shown["ar/shadow"][h]["count"] == want["count"]
        for name in ("pinball", "coverage", "mae", "mae_ratio"):
            assert shown["ar/shadow"][h][name] == pytest.approx(want[name], rel=1e-6), (h, name)
    # the pair: every forecast the shadow settled was settled by the session too, so the mean difference is
    # the difference of the two mean pinball losses
    [pair] = compared["pairs"]
    assert compared["shadow"] == 1.0
    assert (pair["model"], pair["shadow"]) == (registry.champion("latent"), registry.champion("ar"))
    for row in pair["horizons"]:
        h = row["horizon"]
        assert row["count"] == expected[h]["count"]
        model_loss, shadow_loss = shown["latent"][h]["pinball"], shown["ar/shadow"][h]["pinball"]
        assert row["mean_difference"] == pytest.approx(model_loss - shadow_loss, rel=1e-6)
        assert 0 <= row["p_value"] <= 1 and row["verdict"] in {"model", "shadow", "tie"}


def test_compare_live_keeps_the_last_pairs_and_tests_them(make_settings: MakeSettings, closes: list[float]) -> None:
    with TestClient(create_app(make_settings(shadow=1.0, shadow_pairs=10))) as client:
        assert client.get("/v1/compare/live").json() == {"shadow": 1.0, "pairs": []}
        offline = Offline(closes)
        session_id = open_session(client, closes, offline)
        feed(client, session_id, closes, offline, WARM, END)
        [pair] = client.get("/v1/compare/live").json()["pairs"]
    assert [row["count"] for row in pair["horizons"]] == [10, 10, 10]


def test_the_verdict_names_the_lower_loss_when_the_difference_is_clear() -> None:
    rng = np.random.default_rng(0)
    paired = PairedLosses()
    paired.add("latent-1", "ar-1", {1: list(0.01 + 0.001 * rng.standard_normal(200)), 2: [0.0, 0.0]}, 100)
    [pair] = report(paired)
    one, two = pair["horizons"]
    assert one["count"] == 100 and one["verdict"] == "shadow" and one["statistic"] > 0
    assert two["count"] == 2 and two["verdict"] is None  # too few to test at horizon 2
    paired.add("latent-1", "ar-1", {1: list(-0.01 + 0.001 * rng.standard_normal(100))}, 100)
    assert report(paired)[0]["horizons"][0]["verdict"] == "model"
    assert math.isclose(report(paired)[0]["horizons"][0]["mean_difference"], -0.01, abs_tol=1e-3)


def test_a_session_migrated_to_its_shadows_version_drops_its_shadow(
    make_settings: MakeSettings, closes: list[float]
) -> None:
    with TestClient(create_app(make_settings(shadow=1.0))) as client:
        offline = Offline(closes)
        session_id = open_session(client, closes, offline)
        feed(client, session_id, closes, offline, WARM, WARM + 8)
        before = live_models(client)["ar/shadow"][1]["count"]
        migrated = client.post(f"/v1/sessions/{session_id}/migrate", json={"mode": "ar"})
        assert migrated.status_code == 200, migrated.text
        seq = migrated.json()["next_seq"]
        for n in range(seq, seq + 6):
            reply = client.post(f"/v1/sessions/{session_id}/observations", json={"seq": n, "observations": [closes[n]]})
            assert reply.status_code == 200, reply.text
        shown = live_models(client)
    assert shown["ar/shadow"][1]["count"] == before  # no more shadow scores
    assert shown["ar"][1]["count"] > 0  # the session's own, on its new version


@pytest.fixture(scope="module")
def challenged(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """Champions of both modes, then a newer challenger of each (tiny, closes only), a minute apart."""
    minutes = iter(range(100))
    registry = Registry(
        tmp_path_factory.mktemp("challenged"), lambda: datetime(2026, 1, 1, 0, next(minutes), tzinfo=UTC)
    )
    for mode in ("latent", "ar"):
        registry.promote(registry.register(tiny_checkpoint(mode, seed=1)).version)
    for mode, seed in (("latent", 3), ("ar", 4)):
        registry.register(tiny_checkpoint(mode, seed=seed))
    return registry


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_the_newest_challenger_of_each_mode_shadows_too_each_scored_and_paired_on_its_own(
    make_settings: MakeSettings,
    closes: list[float],
    challenged: Registry,
    store: str,
    request: pytest.FixtureRequest,
) -> None:
    champions = {mode: challenged.champion(mode) for mode in ("latent", "ar")}
    newest = {mode: challenged.versions(mode)[-1].version for mode in ("latent", "ar")}
    assert set(newest.values()).isdisjoint(champions.values())
    offline = Offline(closes)
    settings = make_settings(artifacts=challenged.root, shadow=1.0, **redis_overrides(store, request))
    with TestClient(create_app(settings)) as client:
        session_id = open_session(client, closes, offline)
        feed(client, session_id, closes, offline, WARM, END)
        models = client.get("/v1/models/live").json()["models"]
        compared = client.get("/v1/compare/live").json()["pairs"]
    shown = {(m["version"], m["mode"]): m["horizons"][0]["count"] for m in models}
    expected = offline.scores(END)[1]["count"]
    assert shown == {
        (champions["latent"], "latent"): expected,
        (champions["ar"], "ar/shadow"): expected,
        (newest["latent"], "latent/shadow"): expected,
        (newest["ar"], "ar/shadow"): expected,
    }
    pairs = {(pair["model"], pair["shadow"]): pair["horizons"][0]["count"] for pair in compared}
    assert pairs == {(champions["latent"], shadow): expected for shadow in (champions["ar"], *newest.values())}


def test_challengers_are_left_out_when_the_setting_says_so_and_never_shadow_their_own_session(
    make_settings: MakeSettings, closes: list[float], challenged: Registry
) -> None:
    newest_latent = challenged.versions("latent")[-1].version
    for challengers, version, expected in (
        (False, None, {challenged.champion("ar")}),
        (True, newest_latent, {challenged.champion("ar"), challenged.versions("ar")[-1].version}),
    ):
        settings = make_settings(artifacts=challenged.root, shadow=1.0, shadow_challengers=challengers)
        with TestClient(create_app(settings)) as client:
            opened = {"history": closes[:WARM], **({"version": version} if version else {"mode": "latent"})}
            session_id = client.post("/v1/sessions", json=opened).json()["session_id"]
            for seq in range(WARM, WARM + 5):
                body = {"seq": seq, "observations": [closes[seq]]}
                assert client.post(f"/v1/sessions/{session_id}/observations", json=body).status_code == 200
            pairs = client.get("/v1/compare/live").json()["pairs"]
        assert {pair["shadow"] for pair in pairs} == expected, challengers
