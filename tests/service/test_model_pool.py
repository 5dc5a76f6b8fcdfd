"""The model pool serves champions, loads pinned versions on demand, survives a bad champion."""

from __future__ import annotations

import pytest

from latentcast.errors import NotFoundError, UnavailableError
from service.model_pool import Backoff, ModelPool
from tests.factories import tiny_checkpoint
from training.registry import Registry


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def own_registry(tmp_path) -> Registry:
    registry = Registry(tmp_path / "artifacts")
    registry.promote(registry.register(tiny_checkpoint("latent", seed=1)).version)
    return registry


def test_refresh_loads_the_champions(own_registry: Registry):
    pool = ModelPool(own_registry, idle_seconds=60)
    result = pool.refresh()
    champion = own_registry.champion("latent")
    assert result.champions == {"latent": champion} and result.changed == {"latent": champion}
    assert pool.resolve("latent").version == champion == pool.resolve().version
    assert pool.loaded() == {champion: "latent"}
    assert pool.refresh().changed == {}


def test_unknown_versions_and_modes_without_champion_are_not_found(own_registry: Registry):
    pool = ModelPool(own_registry, idle_seconds=60)
    pool.refresh()
    with pytest.raises(NotFoundError, match=r"^no champion for mode 'ar': no ar model has been promoted yet$"):
        pool.resolve("ar")
    with pytest.raises(NotFoundError, match=r"^unknown mode 'var'; valid modes: ar, latent$"):
        pool.resolve("var")
    with pytest.raises(NotFoundError, match=r"^no model version 'latent-20200101T000000-000000'$"):
        pool.resolve(version="latent-20200101T000000-000000")


def test_an_empty_registry_is_not_ready(tmp_path):
    pool = ModelPool(Registry(tmp_path / "nothing"), idle_seconds=60)
    assert pool.refresh().champions == {}
    with pytest.raises(UnavailableError) as caught:
        pool.require_champion()
    assert caught.value.message == "no model loaded: the registry has no champion yet"


def test_a_new_champion_that_does_not_load_leaves_the_old_one_serving(own_registry: Registry):
    pool = ModelPool(own_registry, idle_seconds=60)
    pool.refresh()
    old = pool.resolve("latent").version
    bad = own_registry.register(tiny_checkpoint("latent", seed=5)).version
    own_registry.promote(bad)
    (own_registry.path(bad) / "model.pt").write_bytes(b"not a checkpoint")
    result = pool.refresh()
    assert result.changed == {}
    assert result.failed == {"latent": f"version {bad}: model.pt does not match its manifest (corrupt or tampered)"}
    assert pool.resolve("latent").version == old


def test_a_pinned_version_loads_on_demand_and_unloads_once_idle(own_registry: Registry):
    clock = Clock()
    pool = ModelPool(own_registry, idle_seconds=60, clock=clock)
    pool.refresh()
    old = pool.resolve("latent").version
    new = own_registry.register(tiny_checkpoint("latent", seed=6)).version
    own_registry.promote(new)
    assert pool.refresh().changed == {"latent": new}
    assert set(pool.loaded()) == {old, new}  # sessions on the old version keep it loaded
    clock.now = 50.0
    assert pool.get(old).version == old
    clock.now = 100.0
    assert pool.unload_idle() == []
    clock.now = 111.0
    assert pool.unload_idle() == [old]
    assert set(pool.loaded()) == {new}
    assert pool.get(old).version == old  # after a restart or an unload, loaded again from the registry


def test_a_champion_that_does_not_load_is_retried_with_a_growing_wait_and_logged_once(
    own_registry: Registry, caplog: pytest.LogCaptureFixture
):
    clock = Clock()
    pool = ModelPool(own_registry, idle_seconds=1e9, clock=clock, backoff=Backoff(first_seconds=10, max_seconds=25))
    pool.refresh()
    old = pool.resolve("latent").version
    bad = own_registry.register(tiny_checkpoint("latent", seed=5)).version
    own_registry.promote(bad)
    (own_registry.path(bad) / "model.pt").write_bytes(b"not a checkpoint")
    reason = f"version {bad}: model.pt does not match its manifest (corrupt or tampered)"
    caplog.set_level("DEBUG", logger="service.model_pool")
    tried_at: list[float] = []
    for now in range(0, 100):
        clock.now = float(now)
        before = len(caplog.records)
        assert pool.refresh().failed == {"latent": reason}
        if len(caplog.records) > before:  # every failed load logs a line, at debug level once known
            tried_at.append(clock.now)
    assert tried_at == [0.0, 10.0, 30.0, 55.0, 80.0]  # waits of 10, 20, then 25 (the most)
    failing = pool.failing()["latent"]
    assert (failing.version, failing.reason, failing.failures, failing.retry_at) == (bad, reason, 5, 105.0)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == [f"keeping the latent champion {old}: {reason}; next try in 10 s"]
    assert pool.resolve("latent").version == old

    # an operator's reload tries at once; a good champion then clears the failure with one line
    assert pool.refresh(retry_now=True).failed == {"latent": reason}
    assert pool.failing()["latent"].failures == 6
    caplog.clear()
    fixed = own_registry.register(tiny_checkpoint("latent", seed=7)).version
    own_registry.promote(fixed)
    assert pool.refresh().changed == {"latent": fixed}
    assert pool.failing() == {}
    logged = [r.getMessage() for r in caplog.records if r.levelname != "DEBUG"]
    assert logged == [f"loaded model {fixed}", f"latent champion is now {fixed}"]


def test_a_failing_pointer_put_back_on_the_served_champion_is_forgotten(
    own_registry: Registry, caplog: pytest.LogCaptureFixture
):
    pool = ModelPool(own_registry, idle_seconds=60, backoff=Backoff(first_seconds=60, max_seconds=60))
    pool.refresh()
    old = pool.resolve("latent").version
    bad = own_registry.register(tiny_checkpoint("latent", seed=5)).version
    own_registry.promote(bad)
    (own_registry.path(bad) / "model.pt").write_bytes(b"not a checkpoint")
    assert set(pool.refresh().failed) == {"latent"}
    caplog.set_level("INFO", logger="service.model_pool")
    own_registry.promote(old)
    assert pool.refresh().failed == {} and pool.failing() == {}
    assert f"the latent champion pointer no longer fails: it names {old}" in caplog.messages


def test_the_wait_doubles_up_to_its_most():
    backoff = Backoff(first_seconds=1.5, max_seconds=10)
    assert [backoff.delay(n) for n in range(1, 6)] == [1.5, 3.0, 6.0, 10.0, 10.0]
    assert backoff.delay(10_000) == 10
