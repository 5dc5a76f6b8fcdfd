"""The model registry: immutable versions per mode and a champion pointer per mode.

    ARTIFACTS/<mode>/<version>/   model.pt, config.json, scaler.json, metrics.json,
                                  data.json, manifest.json (sha256 of each file)
    ARTIFACTS/<mode>/champion.json {"version": ..., "promoted_at": ...}
    ARTIFACTS/<mode>/promotions.jsonl  one line per promotion, oldest first

A version is written into a hidden ``.tmp-*`` folder and renamed into place, so
a half-written version is never visible. The champion pointer is replaced by
atomic rename and only ever names a version that loaded and verified. Version
ids start with their mode (``latent-20261125T101530-3fa2c1``), so a version
alone says where it lives. A version is removed (``retire``) the other way
round: renamed out of sight into a hidden ``.removed-*`` folder first, then
deleted, so that a removal cut short leaves no half-removed version visible.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from data.files import fsync_folder, write_whole
from latentcast.errors import CheckpointError, NotFoundError
from models.checkpoint import build_from_checkpoint, load_checkpoint, save_checkpoint
from models.config import MODES
from models.predictor import Predictor

CHAMPION_FILE = "champion.json"
PROMOTIONS_FILE = "promotions.jsonl"
REMOVED_PREFIX = ".removed-"
MANIFEST_FILE = "manifest.json"
VERSION_PATTERN = re.compile(r"^(ar|latent)-\d{8}T\d{6}-[0-9a-f]{6}$")
STALE_TMP_SECONDS = 3600.0


@dataclass(frozen=True)
class ModelVersion:
    """A registered version: its id, mode, folder and the metadata saved with it."""

    version: str
    mode: str
    path: Path
    created: str
    metrics: dict[str, Any]
    data_span: dict[str, Any]
    config: dict[str, Any]
    features: tuple[str, ...]  # the inputs the model reads, from its scaler


@dataclass(frozen=True)
class Listing:
    """The registry's readable versions, oldest first, and its broken ones with the reason (by version)."""

    versions: list[ModelVersion]
    broken: dict[str, str]


class Registry:
    """Versions of trained models under one artifacts folder."""

    def __init__(self, root: str | os.PathLike[str], clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.root = Path(root)
        # what "now" is when a version is created or promoted; a simulation of months advances it by hand
        self.clock = clock

    # writing -----------------------------------------------------------------

    def register(self, checkpoint: dict[str, Any]) -> ModelVersion:
        """Store ``checkpoint`` as a new version of its mode; returns it.

        The checkpoint must rebuild into a model (``CheckpointError`` otherwise).
        """
        model, _ = build_from_checkpoint(checkpoint, "new version")
        mode = model.config.mode
        folder = self.root / mode
        folder.mkdir(parents=True, exist_ok=True)
        self._remove_stale_tmp(folder)
        created = self.clock()
        version = f"{mode}-{created:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
        tmp = Path(tempfile.mkdtemp(dir=folder, prefix=f".tmp-{version}-"))
        try:
            save_checkpoint(checkpoint, tmp / "model.pt")
            meta = {"version": version, "mode": mode, "created": created.isoformat(timespec="microseconds")}
            _write_json(tmp / "config.json", checkpoint["config"])
            _write_json(tmp / "scaler.json", checkpoint["scaler"])
            _write_json(tmp / "metrics.json", checkpoint.get("metrics", {}))
            _write_json(tmp / "data.json", checkpoint.get("data_span", {}))
            files = sorted(p.name for p in tmp.iterdir())
            _write_json(tmp / MANIFEST_FILE, {**meta, "files": {name: _sha256(tmp / name) for name in files}})
            fsync_folder(tmp)
            os.rename(tmp, folder / version)
            fsync_folder(folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return self.get(version)

    def promote(self, version: str) -> None:
        """Make ``version`` the champion of its mode, after verifying it loads."""
        self.load(version)
        mode = _mode_of(version)
        pointer = {"version": version, "promoted_at": self.clock().isoformat(timespec="seconds")}
        folder = self.root / mode
        write_whole(folder / CHAMPION_FILE, json.dumps(pointer), sync_folder=True)
        # the history serves retention alone: a line lost to a crash here makes the version a
        # challenger in its eyes, kept for the challengers' days instead of as a previous champion
        with open(folder / PROMOTIONS_FILE, "a") as history:
            history.write(json.dumps(pointer) + "\n")

    def retire(self, version: str) -> None:
        """Remove ``version``: out of sight by one rename, then deleted.

        A removal cut short (a crash, SIGKILL) leaves a hidden ``.removed-*``
        folder that the next ``remove_leftovers`` deletes, never a version with
        files missing.
        """
        path = self.path(version)
        hidden = path.parent / f"{REMOVED_PREFIX}{version}-{secrets.token_hex(3)}"
        os.rename(path, hidden)
        fsync_folder(path.parent)
        shutil.rmtree(hidden)

    def remove_leftovers(self) -> list[str]:
        """Delete the hidden folders of removals cut short; their names."""
        removed = []
        for mode in MODES:
            folder = self.root / mode
            if folder.is_dir():
                for leftover in sorted(folder.glob(f"{REMOVED_PREFIX}*")):
                    shutil.rmtree(leftover, ignore_errors=True)
                    removed.append(leftover.name)
        return removed

    def promotions(self, mode: str) -> list[str]:
        """The versions of ``mode`` ever promoted, by their last promotion, oldest first."""
        history = self.root / _check_mode(mode) / PROMOTIONS_FILE
        if not history.exists():
            return []
        order: dict[str, None] = {}
        for line in history.read_text().splitlines():
            try:
                version = json.loads(line).get("version")
            except (ValueError, AttributeError):
                continue  # a line cut short by a crash
            if isinstance(version, str):
                order.pop(version, None)
                order[version] = None
        return list(order)

    # reading -----------------------------------------------------------------

    def versions(self, mode: str | None = None) -> list[ModelVersion]:
        """Every complete version (of ``mode``, or of all modes), oldest first; broken ones skipped."""
        return self.listing(mode).versions

    def listing(self, mode: str | None = None) -> Listing:
        """The versions (of ``mode``, or of all modes) whose metadata reads, and why the others do not.

        One damaged folder (a manifest deleted, a file truncated by a full disk)
        must not hide the healthy versions beside it.
        """
        found: list[ModelVersion] = []
        broken: dict[str, str] = {}
        for m in [mode] if mode else list(MODES):
            folder = self.root / _check_mode(m)
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if not VERSION_PATTERN.match(path.name):
                    continue
                try:
                    found.append(self.get(path.name))
                except (CheckpointError, NotFoundError) as exc:
                    broken[path.name] = exc.message
        return Listing(sorted(found, key=lambda v: (v.created, v.version)), broken)

    def newest(self, mode: str) -> str | None:
        """The newest version of ``mode`` by the time its name carries, then by when its folder was written;
        None if there is none. Only folder names are read: the version may still fail to load."""
        try:
            found = [
                ((path.name.rsplit("-", 2)[1], path.stat().st_mtime_ns), path.name)
                for path in (self.root / _check_mode(mode)).iterdir()
                if VERSION_PATTERN.match(path.name)
            ]
        except OSError:
            return None
        return max(found, default=(None, None))[1]

    def get(self, version: str) -> ModelVersion:
        """The metadata of ``version`` (cheap: no weights are read)."""
        path = self.path(version)
        manifest = _read_json(path / MANIFEST_FILE, version)
        return ModelVersion(
            version=version,
            mode=_mode_of(version),
            path=path,
            created=str(manifest.get("created", "")),
            metrics=_read_json(path / "metrics.json", version),
            data_span=_read_json(path / "data.json", version),
            config=_read_json(path / "config.json", version),
            features=tuple(str(f) for f in _read_json(path / "scaler.json", version).get("features", ())),
        )

    def path(self, version: str) -> Path:
        """The folder of ``version``; ``NotFoundError`` if there is none."""
        if not VERSION_PATTERN.match(version):
            raise NotFoundError(f"no model version {version!r} (versions look like latent-20260101T000000-a1b2c3)")
        path = self.root / _mode_of(version) / version
        if not path.is_dir():
            raise NotFoundError(f"no model version {version!r}")
        return path

    def load(self, version: str) -> dict[str, Any]:
        """The verified checkpoint of ``version``.

        Every file must match the sha256 in its manifest and the weights must
        rebuild into the saved config; ``CheckpointError`` otherwise.
        """
        path = self.path(version)
        manifest = _read_json(path / MANIFEST_FILE, version)
        for name, digest in dict(manifest.get("files", {})).items():
            file = path / name
            if not file.is_file():
                raise CheckpointError(f"version {version}: {name} is missing")
            if _sha256(file) != digest:
                raise CheckpointError(f"version {version}: {name} does not match its manifest (corrupt or tampered)")
        checkpoint = load_checkpoint(path / "model.pt", origin=f"version {version}: model.pt")
        if checkpoint.get("config") != _read_json(path / "config.json", version):
            raise CheckpointError(f"version {version}: config.json differs from the checkpoint's config")
        model, _ = build_from_checkpoint(checkpoint, f"version {version}")
        if model.config.mode != _mode_of(version):
            raise CheckpointError(
                f"version {version}: its model is of mode {model.config.mode}, not {_mode_of(version)}"
            )
        return checkpoint

    def predictor(self, version: str) -> Predictor:
        """A ready-to-serve predictor of ``version``."""
        return Predictor.from_checkpoint(self.load(version), version)

    def champion(self, mode: str) -> str | None:
        """The champion version of ``mode``, or None if none was promoted.

        ``CheckpointError`` if the pointer is unreadable or names no version of
        ``mode`` (a pointer edited by hand, say): a pointer that another mode's
        version would pass would serve that mode's sessions with the wrong model.
        """
        pointer = self.root / _check_mode(mode) / CHAMPION_FILE
        if not pointer.exists():
            return None
        version = _read_json(pointer, f"{mode} champion").get("version")
        if not isinstance(version, str):
            raise CheckpointError(f"the {mode} champion pointer names no version")
        if not VERSION_PATTERN.match(version) or _mode_of(version) != mode:
            raise CheckpointError(f"the {mode} champion pointer names {version[:80]!r}, not a {mode} version")
        return version

    def champions(self) -> dict[str, str | None]:
        return {mode: self.champion(mode) for mode in MODES}

    def _remove_stale_tmp(self, folder: Path) -> None:
        """Remove folders left by writers that crashed more than an hour ago."""
        for leftover in folder.glob(".tmp-*"):
            if time.time() - leftover.stat().st_mtime > STALE_TMP_SECONDS:
                shutil.rmtree(leftover, ignore_errors=True)


def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise NotFoundError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
    return mode


def _mode_of(version: str) -> str:
    return version.split("-", 1)[0]


def _write_json(path: Path, value: Any) -> None:
    with open(path, "w") as handle:
        json.dump(value, handle, indent=2, sort_keys=True)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"{what}: {path.name} is missing") from exc
    except OSError as exc:
        # an OSError's text names the whole path: the reason alone, which clients may see
        raise CheckpointError(f"{what}: {path.name} is unreadable ({exc.strerror})") from exc
    except ValueError as exc:
        raise CheckpointError(f"{what}: {path.name} is unreadable ({exc})") from exc
    if not isinstance(value, dict):
        raise CheckpointError(f"{what}: {path.name} is not a JSON object")
    return value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
