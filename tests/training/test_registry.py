from __future__ import annotations

import json
import os

import pytest
import torch

from latentcast.errors import CheckpointError, NotFoundError
from tests.factories import tiny_checkpoint
from training.registry import Registry


def test_register_lists_and_loads_versions(tmp_path):
    registry = Registry(tmp_path)
    first = registry.register(tiny_checkpoint("latent", metrics={"val_loss": 0.7}))
    second = registry.register(tiny_checkpoint("ar", seed=1))
    assert first.version.startswith("latent-") and second.version.startswith("ar-")
    assert sorted(p.name for p in first.path.iterdir()) == [
        "config.json",
        "data.json",
        "manifest.json",
        "metrics.json",
        "model.pt",
        "scaler.json",
    ]
    assert [v.version for v in registry.versions()] == [first.version, second.version]
    assert [v.version for v in registry.versions("ar")] == [second.version]
    assert registry.get(first.version).metrics == {"val_loss": 0.7}
    assert registry.get(first.version).data_span["source"] == "bundled"
    assert registry.get(first.version).features == ("returns",)
    raw = torch.load(first.path / "model.pt", weights_only=True)
    assert raw["config"]["mode"] == "latent"
    predictor = registry.predictor(first.version)
    assert predictor.version == first.version and predictor.config.mode == "latent"


def test_newest_names_the_last_version_of_a_mode_from_folder_names_alone(tmp_path):
    registry = Registry(tmp_path)
    assert registry.newest("latent") is None
    older = registry.register(tiny_checkpoint("latent")).version
    newer = registry.register(tiny_checkpoint("latent", seed=1)).version
    registry.register(tiny_checkpoint("ar"))
    (tmp_path / "latent" / ".tmp-latent-29991231T000000-abcdef-x").mkdir()  # a writer's leftover is no version
    assert registry.newest("latent") == newer != older
    (registry.path(newer) / "manifest.json").unlink()  # read by name only: loading it is the caller's test
    assert registry.newest("latent") == newer


def test_promote_points_the_champion_of_the_mode(tmp_path):
    registry = Registry(tmp_path)
    assert registry.champions() == {"ar": None, "latent": None}
    v1 = registry.register(tiny_checkpoint("latent")).version
    v2 = registry.register(tiny_checkpoint("latent", seed=2)).version
    registry.promote(v1)
    assert registry.champion("latent") == v1
    registry.promote(v2)
    assert registry.champions() == {"ar": None, "latent": v2}
    assert json.loads((tmp_path / "latent" / "champion.json").read_text())["version"] == v2


def test_crash_between_writing_and_renaming_leaves_nothing_visible(tmp_path, monkeypatch):
    registry = Registry(tmp_path)
    champion = registry.register(tiny_checkpoint("latent")).version
    registry.promote(champion)

    def crash(src, dst):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(OSError, match="simulated crash"):
        registry.register(tiny_checkpoint("latent", seed=5))
    monkeypatch.undo()
    assert [v.version for v in registry.versions("latent")] == [champion]
    assert registry.champion("latent") == champion
    assert not list((tmp_path / "latent").glob(".tmp-*"))


def test_a_killed_writer_leaves_only_a_hidden_folder_that_is_ignored(tmp_path):
    registry = Registry(tmp_path)
    champion = registry.register(tiny_checkpoint("ar")).version
    registry.promote(champion)
    half = tmp_path / "ar" / ".tmp-ar-20260101T000000-abcdef-x"
    half.mkdir()
    (half / "model.pt").write_bytes(b"half a checkpoint")
    assert [v.version for v in registry.versions("ar")] == [champion]
    assert registry.champion("ar") == champion


def test_corrupt_version_is_refused_and_never_becomes_champion(tmp_path):
    registry = Registry(tmp_path)
    good = registry.register(tiny_checkpoint("latent")).version
    registry.promote(good)
    bad = registry.register(tiny_checkpoint("latent", seed=3))
    model = bad.path / "model.pt"
    blob = bytearray(model.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    model.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError) as err:
        registry.load(bad.version)
    assert str(err.value) == f"version {bad.version}: model.pt does not match its manifest (corrupt or tampered)"
    with pytest.raises(CheckpointError):
        registry.promote(bad.version)
    assert registry.champion("latent") == good


def test_truncated_weights_are_refused_even_with_a_matching_manifest(tmp_path):
    registry = Registry(tmp_path)
    version = registry.register(tiny_checkpoint("latent"))
    model = version.path / "model.pt"
    model.write_bytes(model.read_bytes()[:300])
    manifest = json.loads((version.path / "manifest.json").read_text())
    import hashlib

    manifest["files"]["model.pt"] = hashlib.sha256(model.read_bytes()).hexdigest()
    (version.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError) as err:
        registry.load(version.version)
    # the version, not a path on the server's disk
    assert str(err.value).startswith(f"version {version.version}: model.pt: unreadable checkpoint (")


def test_missing_file_and_unknown_versions(tmp_path):
    registry = Registry(tmp_path)
    version = registry.register(tiny_checkpoint("ar"))
    (version.path / "scaler.json").unlink()
    with pytest.raises(CheckpointError) as err:
        registry.load(version.version)
    assert str(err.value) == f"version {version.version}: scaler.json is missing"
    with pytest.raises(NotFoundError) as nf:
        registry.load("latent-20200101T000000-000000")
    assert str(nf.value) == "no model version 'latent-20200101T000000-000000'"
    with pytest.raises(NotFoundError) as nf:
        registry.load("../../etc/passwd")
    assert str(nf.value) == ("no model version '../../etc/passwd' (versions look like latent-20260101T000000-a1b2c3)")
    with pytest.raises(NotFoundError) as nf:
        registry.champion("arima")
    assert str(nf.value) == "unknown mode 'arima'; valid modes: ar, latent"


def test_a_champion_pointer_to_another_mode_s_version_is_refused(tmp_path):
    registry = Registry(tmp_path)
    ar = registry.register(tiny_checkpoint("ar")).version
    registry.promote(ar)
    (tmp_path / "latent").mkdir()
    (tmp_path / "latent" / "champion.json").write_text(json.dumps({"version": ar}))
    with pytest.raises(CheckpointError) as err:
        registry.champion("latent")
    assert str(err.value) == f"the latent champion pointer names {ar!r}, not a latent version"
    (tmp_path / "latent" / "champion.json").write_text(json.dumps({"version": "../../etc/passwd"}))
    with pytest.raises(CheckpointError, match=r"names '\.\./\.\./etc/passwd', not a latent version$"):
        registry.champion("latent")
    assert registry.champion("ar") == ar


def test_a_version_whose_model_is_of_another_mode_does_not_load(tmp_path):
    registry = Registry(tmp_path)
    ar = registry.register(tiny_checkpoint("ar"))
    disguised = tmp_path / "latent" / ar.version.replace("ar-", "latent-", 1)
    disguised.parent.mkdir()
    ar.path.rename(disguised)
    with pytest.raises(CheckpointError) as err:
        registry.load(disguised.name)
    assert str(err.value) == f"version {disguised.name}: its model is of mode ar, not latent"


def test_a_broken_version_folder_is_listed_apart_and_the_others_still_are(tmp_path):
    registry = Registry(tmp_path)
    healthy = registry.register(tiny_checkpoint("latent")).version
    broken = registry.register(tiny_checkpoint("latent", seed=2)).version
    (registry.path(broken) / "manifest.json").unlink()
    listing = registry.listing()
    assert [v.version for v in listing.versions] == [healthy]
    assert listing.broken == {broken: f"{broken}: manifest.json is missing"}
    assert [v.version for v in registry.versions("latent")] == [healthy]
    unreadable = registry.path(healthy) / "metrics.json"
    unreadable.chmod(0)
    try:
        if os.geteuid() != 0:  # root reads it anyway
            reason = registry.listing().broken[healthy]
            assert reason == f"{healthy}: metrics.json is unreadable (Permission denied)"
            assert str(tmp_path) not in reason
    finally:
        unreadable.chmod(0o644)
