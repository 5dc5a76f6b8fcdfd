"""Shadow models: a sampled session also advanced by other models, their forecasts scored, never answered.

A session is sampled (``sampled``) from its id alone, so every replica agrees.
Its shadows (the other mode's champion, and the newest registered challenger of
each mode: at most ``MAX_SHADOWS``) are opened beside it on the same history and
kept in the session's record, packed with the session's own issued forecasts in
``SessionRecord.issued`` (``pack``): the same compare-and-set moves them all, so
a retried or overlapping batch advances the shadows as it does the session, once.

An append advances each shadow by what it applies, scores what it settles
(``service/live/scores.py``) under the shadow's version and the mode
``<mode>/shadow``, and pairs its losses with the session model's on the forecasts
both settled: for each horizon, the session model's mean pinball loss less the
shadow's (``ShadowScores.differences``), kept by the store, the last few per
pair and horizon, for ``GET /v1/compare/live``.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from latentcast.errors import StateError
from service.live.scores import Issued, Settled

# what starts a record's issued bytes that carry shadows (no issued forecasts start so: their first byte is a
# small format number); then the length of the session's issued bytes and the number of shadows, the issued
# bytes, and for each shadow the lengths of its version, state and issued bytes, then those
MAGIC = b"\xfdshadows"
_HEAD = struct.Struct("<IB")
_SHADOW = struct.Struct("<HII")
# the earlier format, of one shadow, still read: the lengths of the session's issued bytes, the shadow's
# version, state and issued, then those
ONE_SHADOW_MAGIC = b"\xfeshadow"
_ONE_SHADOW = struct.Struct("<IHII")
MAX_SHADOWS = 3  # the other mode's champion and the newest challenger of each mode
SHADOW_MODE = "/shadow"  # a shadow's scores are kept under its mode followed by this


def sampled(session_id: str, fraction: float) -> bool:
    """Whether ``session_id`` is among the ``fraction`` of sessions that run a shadow: a hash of the id, so
    every replica decides alike."""
    if fraction <= 0:
        return False
    point = int.from_bytes(hashlib.sha256(session_id.encode()).digest()[:8], "little") / 2**64
    return point < fraction


@dataclass(frozen=True)
class Shadow:
    """A session's shadow: the model version that runs it, its state and its forecasts awaiting outcomes."""

    version: str
    state: bytes
    issued: bytes


def packed(blob: bytes) -> bool:
    """Whether a record's issued bytes carry shadows (``pack``), in either format."""
    return blob.startswith(MAGIC) or blob.startswith(ONE_SHADOW_MAGIC)


def pack(issued: bytes, shadows: Sequence[Shadow]) -> bytes:
    """The record's issued bytes: the session's, with its shadows if it has any (at most ``MAX_SHADOWS``)."""
    if not shadows:
        return issued
    assert len(shadows) <= MAX_SHADOWS, f"{len(shadows)} shadows, at most {MAX_SHADOWS}"
    parts = [MAGIC, _HEAD.pack(len(issued), len(shadows)), issued]
    for shadow in shadows:
        name = shadow.version.encode()
        parts += (_SHADOW.pack(len(name), len(shadow.state), len(shadow.issued)), name, shadow.state, shadow.issued)
    return b"".join(parts)


def unpack(blob: bytes) -> tuple[bytes, tuple[Shadow, ...]]:
    """Inverse of ``pack`` (and reads the earlier format of one shadow); ``StateError`` naming what does not
    read."""
    if blob.startswith(ONE_SHADOW_MAGIC):
        return _unpack_one(blob)
    if not blob.startswith(MAGIC):
        return blob, ()
    at = len(MAGIC) + _HEAD.size
    if len(blob) < at:
        raise StateError(f"a session's shadows truncated: {len(blob)} bytes")
    size, count = _HEAD.unpack_from(blob, len(MAGIC))
    if count > MAX_SHADOWS:
        raise StateError(f"a session's record names {count} shadows, at most {MAX_SHADOWS}")
    issued, at = blob[at : at + size], at + size
    shadows: list[Shadow] = []
    for _ in range(count):
        if len(blob) < at + _SHADOW.size:
            raise StateError(f"a session's shadows of {len(blob)} bytes end inside shadow {len(shadows) + 1}")
        sizes = _SHADOW.unpack_from(blob, at)
        at += _SHADOW.size
        if at + sum(sizes) > len(blob):
            raise StateError(f"a session's shadows of {len(blob)} bytes do not hold the {sum(sizes)} they name")
        name, state, shadow_issued = _parts(blob, at, sizes)
        at += sum(sizes)
        shadows.append(Shadow(name.decode(errors="replace"), state, shadow_issued))
    if at != len(blob):
        raise StateError(f"a session's shadows of {len(blob)} bytes hold {len(blob) - at} more than they name")
    return issued, tuple(shadows)


def _unpack_one(blob: bytes) -> tuple[bytes, tuple[Shadow, ...]]:
    """``unpack`` of the earlier format, of one shadow."""
    at = len(ONE_SHADOW_MAGIC) + _ONE_SHADOW.size
    if len(blob) < at:
        raise StateError(f"a session's shadow truncated: {len(blob)} bytes")
    sizes = _ONE_SHADOW.unpack_from(blob, len(ONE_SHADOW_MAGIC))
    if at + sum(sizes) != len(blob):
        raise StateError(f"a session's shadow of {len(blob)} bytes does not hold the {sum(sizes)} it names")
    issued, name, state, shadow_issued = _parts(blob, at, sizes)
    return issued, (Shadow(name.decode(errors="replace"), state, shadow_issued),)


def _parts(blob: bytes, at: int, sizes: Sequence[int]) -> list[bytes]:
    parts = []
    for size in sizes:
        parts.append(blob[at : at + size])
        at += size
    return parts


def losses(issued: Issued, first_seq: int, closes: Sequence[float], levels: tuple[float, ...]) -> dict[int, float]:
    """The mean pinball loss over ``levels`` of each (forecast, horizon) the closes settle, keyed by the seq
    of the observation that settles it times the horizon bound plus the horizon (one key per pair)."""
    out: dict[int, float] = {}
    last = first_seq + len(closes) - 1
    q = len(levels)
    for pending in issued.pending:
        for h in range(max(1, first_seq - pending.origin), min(issued.horizon, last - pending.origin) + 1):
            outcome = closes[pending.origin + h - first_seq]
            realized = math.log(outcome / pending.close)
            e = [realized - v for v in pending.rows[(h - 1) * q : h * q]]
            loss = sum(max(level * x, (level - 1) * x) for level, x in zip(levels, e, strict=True)) / q
            out[(pending.origin + h) * (issued.horizon + 1) + h] = loss
    return out


@dataclass(frozen=True)
class ShadowScores:
    """What one append settled for a session's shadow: its sums, and the paired loss differences (session
    model less shadow) by horizon, of which the store keeps the last ``keep`` per pair and horizon."""

    version: str  # the shadow's
    mode: str  # the shadow's mode followed by SHADOW_MODE
    settled: Settled
    model: str  # the session's version, the other of the pair
    differences: dict[int, list[float]]
    keep: int
    times: dict[int, list[str | None]] = field(default_factory=dict)  # of the observations that settled them


def differences(
    model: dict[int, float],
    shadow: dict[int, float],
    horizon: int,
    first_seq: int = 0,
    times: Sequence[str | None] = (),
) -> tuple[dict[int, list[float]], dict[int, list[str | None]]]:
    """The session model's loss less the shadow's on each (forecast, horizon) both settled, by horizon, in the
    order of the observations that settled them; and the ``time`` of each settling observation (of ``times``,
    those of the observations ``first_seq, ...``; None where there is none)."""
    out: dict[int, list[float]] = {}
    when: dict[int, list[str | None]] = {}
    for key in sorted(model.keys() & shadow.keys(), key=lambda k: (k // (horizon + 1), k % (horizon + 1))):
        h, at = key % (horizon + 1), key // (horizon + 1) - first_seq
        out.setdefault(h, []).append(model[key] - shadow[key])
        when.setdefault(h, []).append(times[at] if 0 <= at < len(times) else None)
    return out, when
