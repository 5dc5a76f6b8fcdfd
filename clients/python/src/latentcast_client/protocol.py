"""What the HTTP client and the WebSocket feed share: the settings, a session's seq, and bulk items.

An append, over either transport, is a list of items ``{"session_id", "seq",
"observations"}``, answered item by item with ``{"status", "reply"}`` or
``{"status", "error"}``. ``bulk_items`` numbers a caller's batches from each
session's seq, and ``took_items`` moves the sessions on by the answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from latentcast_client.errors import ApiError, ConflictError, api_error

try:  # the [orjson] extra, and beside the service, whose dependency it is: JSON much faster (README.md)
    import orjson
except ImportError:
    orjson = None  # type: ignore[assignment]

# the JSON parser of the service's replies (a bulk reply holds a forecast per item)
loads: Callable[[bytes | bytearray | str], Any] = json.loads if orjson is None else orjson.loads

# the header carrying the API key, on HTTP requests and on the WebSocket's handshake
API_KEY_HEADER = "X-API-Key"
# an observation as the API takes it: a close price, or a bar {"close", "open", "high", "low", "volume", "time"}
Wire = float | Mapping[str, Any]


@dataclass(frozen=True)
class ClientSettings:
    """Where the service is and how patiently to talk to it."""

    base_url: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    timeout_seconds: float = 10.0
    retries: int = 5  # sends after the first, on a timeout, a dropped connection or a 5xx that may pass
    backoff_seconds: tuple[float, float] = (0.05, 2.0)  # the wait before the first retry, and the longest
    # acknowledged observations each Session keeps, to resend when the service answers a gap *behind* it: what a
    # Redis failover does to the appends its dead master acknowledged last (docs/redis.md); 0 keeps none
    resend_window: int = 0


@dataclass(eq=False)
class Session:
    """A session on the service, and the seq its next batch carries."""

    session_id: str
    next_seq: int
    model: dict[str, str]
    forecast: dict[str, Any] | None = None
    needs: int = 0  # with no forecast yet: how many more observations the service needs before the first
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    kept: list[Wire] = field(default_factory=list, repr=False)  # the last acknowledged observations, up to next_seq

    def took(self, reply: Mapping[str, Any]) -> None:
        """Move on to ``reply`` (an append's or an open's): its seq, its forecast, or what it still needs."""
        self.next_seq = int(reply["next_seq"])
        self.forecast = reply["forecast"]
        self.needs = int(reply.get("needs") or 0)

    def keep(self, observations: Sequence[Wire], window: int) -> None:
        """Remember ``observations`` (just acknowledged), the last ``window`` of all kept."""
        if window > 0:
            self.kept = [*self.kept, *observations][-window:]

    def resend_from(self, expected_seq: int) -> list[Wire] | None:
        """The kept observations from ``expected_seq`` on, if the service lost no more than are kept."""
        behind = self.next_seq - expected_seq
        return self.kept[len(self.kept) - behind :] if 0 < behind <= len(self.kept) else None


@dataclass(frozen=True)
class Item:
    """A batch for a session at a seq the caller chose: sent as it is, no session's seq read or moved."""

    session_id: str
    seq: int
    observations: Sequence[Wire]

    def to_dict(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "seq": self.seq, "observations": list(self.observations)}


def backoff(settings: ClientSettings, attempt: int) -> float:
    first, longest = settings.backoff_seconds
    return float(min(first * 2**attempt, longest))


def bulk_items(batches: Sequence[tuple[Session, Sequence[Wire]]], sent: dict[str, int]) -> list[dict[str, Any]]:
    """The items of a bulk append, each session's batches numbered from ``sent`` (the seq after its last
    batch sent; its ``next_seq`` when absent), which moves on past them."""
    items = []
    for session, observations in batches:
        seq = sent.get(session.session_id, session.next_seq)
        sent[session.session_id] = seq + len(observations)
        items.append({"session_id": session.session_id, "seq": seq, "observations": list(observations)})
    return items


def took_items(
    batches: Sequence[tuple[Session, Sequence[Wire]]],
    items: Sequence[Mapping[str, Any]],
    answers: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any] | ApiError]:
    """Each session moved on by its items' replies; a reply or an ``ApiError`` per item.

    ``items`` are those sent (their seqs): an item the service answers ``already_applied`` is done,
    and its reply is ``applied_reply``'s.
    """
    results: list[dict[str, Any] | ApiError] = []
    for (session, _), item, answer in zip(batches, items, answers, strict=True):
        if answer["status"] == 200:
            session.took(answer["reply"])
            results.append(dict(answer["reply"]))
        elif already_applied(error := api_error(answer["status"], answer["error"])):
            results.append(applied_reply(session, int(item["seq"]) + len(item["observations"])))
        else:
            results.append(error)
    return results


def applied_reply(session: Session, next_seq: int) -> dict[str, Any]:
    """The reply standing for a batch the service had applied before and answered ``already_applied``
    (its reply no longer kept): the session moves on past it, and the forecast of then is gone."""
    session.next_seq = max(session.next_seq, next_seq)
    return {
        "session_id": session.session_id,
        "model": session.model,
        "next_seq": next_seq,
        "forecast": None,
        "already_applied": True,
    }


def answers(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any] | ApiError]:
    """A bulk reply's items: each one's reply, or its ``ApiError``."""
    return [
        dict(item["reply"]) if item["status"] == 200 else api_error(item["status"], item["error"]) for item in items
    ]


def a_gap(error: ApiError) -> bool:
    """A batch past the session's seq: the service lost appends it had acknowledged, or a batch went missing."""
    return isinstance(error, ConflictError) and error.reason == "gap"


def already_applied(error: ApiError) -> bool:
    """A batch the service applied before, its reply no longer kept: it is done."""
    return isinstance(error, ConflictError) and error.reason == "already_applied"


def key_headers(settings: ClientSettings) -> dict[str, str]:
    return {API_KEY_HEADER: settings.api_key} if settings.api_key else {}


def dumps(body: Any) -> bytes:
    """``body`` as the standard library writes JSON, which sends a NaN price as ``NaN`` for the service to refuse
    by name. orjson writes it where installed, unless its text holds a ``null`` (its NaN, or a None, which the
    standard library writes alike) or it refuses a type (a numpy scalar)."""
    if orjson is not None:
        with contextlib.suppress(TypeError):
            text = orjson.dumps(body)
            if b"null" not in text:
                return text
    return json.dumps(body, separators=(",", ":")).encode()


def error_answer(status: int, body: bytes | bytearray, otherwise: str) -> ApiError:
    """The error of an answer's body ``{"error": {...}}``; with any other body, ``http_error`` saying ``otherwise``."""
    try:
        error = loads(body)["error"]
        return api_error(status, error)
    except (ValueError, KeyError, TypeError, AttributeError):
        return ApiError(status, {"code": "http_error", "message": otherwise})
