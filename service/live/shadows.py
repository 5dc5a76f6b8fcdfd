"""Shadow models: a sampled session also advanced by the other mode's champion, its forecasts scored, never answered.

A session is sampled (``sampled``) from its id alone, so every replica agrees.
Its shadow is opened beside it on the same history and kept in the session's
record, packed with the session's own issued forecasts in ``SessionRecord.issued``
(``pack``): the same compare-and-set moves both, so a retried or overlapping
batch advances the shadow as it does the session, once.

An append advances the shadow by what it applies, scores what it settles
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

# what starts a record's issued bytes that carry a shadow (no issued forecasts start so: their first byte is a
# small format number); then the lengths of the session's issued bytes, the shadow's version, state and issued
MAGIC = b"\xfeshadow"
_LENGTHS = struct.Struct("<IHII")
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


def pack(issued: bytes, shadow: Shadow | None) -> bytes:
    """The record's issued bytes: the session's, with its shadow if it has one."""
    if shadow is None:
        return issued
    name = shadow.version.encode()
    lengths = _LENGTHS.pack(len(issued), len(name), len(shadow.state), len(shadow.issued))
    return b"".join((MAGIC, lengths, issued, name, shadow.state, shadow.issued))


def unpack(blob: bytes) -> tuple[bytes, Shadow | None]:
    """Inverse of ``pack``; ``StateError`` naming what does not read."""
    if not blob.startswith(MAGIC):
        return blob, None
    at = len(MAGIC) + _LENGTHS.size
    if len(blob) < at:
        raise StateError(f"a session's shadow truncated: {len(blob)} bytes")
    sizes = _LENGTHS.unpack_from(blob, len(MAGIC))
    if at + sum(sizes) != len(blob):
        raise StateError(f"a session's shadow of {len(blob)} bytes does not hold the {sum(sizes)} it names")
    parts = []
    for size in sizes:
        parts.append(blob[at : at + size])
        at += size
    issued, name, state, shadow_issued = parts
    return issued, Shadow(name.decode(errors="replace"), state, shadow_issued)


def losses(issued: Issued, first_seq: int, closes: Sequence[float], levels: tuple[float, ...]) -> dict[int, float]:
    """The mean pinball loss over ``levels`` of each (forecast, horizon) the closes settle, keyed by the seq
    of the observation that settles it times the horizon bound plus the horizon (one key per pair)."""
    out: dict[int, float] = {}
    last = first_seq + len(closes) - 1
    q = len(levels)
    for pending in issued.pending:
        remaining = len(pending.rows) // q
        first_h = issued.horizon - remaining + 1
        for h in range(max(first_h, first_seq - pending.origin), min(issued.horizon, last - pending.origin) + 1):
            outcome = closes[pending.origin + h - first_seq]
            realized = math.log(outcome / pending.close)
            e = [realized - v for v in pending.rows[(h - first_h) * q : (h - first_h + 1) * q]]
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
