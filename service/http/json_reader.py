"""``parse_json``: the one JSON reader of request bodies and WebSocket messages.

Every body the service reads (the HTTP routes' and the feed's messages) is
parsed here, so that every malformed one gets the same answer: a
``RequestValidationError`` of type ``json_invalid``, which the service answers
422 ``invalid_request`` (``service/http/errors.py``), and the feed as a 422 frame.

orjson parses what is standard JSON. What it refuses is read once more by the
standard library, which also takes the literals ``NaN``, ``Infinity`` and
``-Infinity`` that many encoders write for a float: a price sent so is then
refused by the value checks with a message naming its observation (``close is
nan``), as it always was. Whatever the standard library refuses too (text that
is not JSON or not UTF-8, nesting deeper than its recursion limit, an integer
past Python's limit on digits, which it raises as a plain ``ValueError``) is
``json_invalid``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import orjson
from fastapi.exceptions import RequestValidationError

from service.forecasting import check_count
from service.http.errors import UNDECODABLE

T = TypeVar("T")

UNPARSABLE = "JSON decode error"


def parse_json(raw: bytes | str) -> Any:
    """``raw`` parsed; ``RequestValidationError`` (``json_invalid``, ``loc`` from ``"body"``) if it is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        refused = exc
    try:
        return json.loads(raw)
    except UnicodeDecodeError as exc:
        raise invalid(UNDECODABLE) from exc
    except json.JSONDecodeError as exc:
        raise invalid(UNPARSABLE, exc.pos) from exc
    except (ValueError, RecursionError) as exc:
        # past the integer-digit limit, or nested deeper than the parser goes: orjson's position
        raise invalid(UNPARSABLE, refused.pos) from exc


def invalid(message: str, position: int | None = None) -> RequestValidationError:
    """The error of a body that is not JSON, as FastAPI raises it (a character offset for a location)."""
    loc: tuple[str | int, ...] = ("body",) if position is None else ("body", position)
    return RequestValidationError([{"type": "json_invalid", "loc": loc, "msg": message, "input": {}}])


async def decode(raw: bytes | str, then: Callable[[Any], T], inline_bytes: int) -> T:
    """``then`` of ``raw`` parsed (its bounds checked, its items validated).

    A body of at most ``inline_bytes`` is read on the event loop; a larger one in a worker thread,
    where its per-item validation (Python code between each item) lets the loop serve others.
    """
    if len(raw) <= inline_bytes:
        return then(parse_json(raw))
    return await anyio.to_thread.run_sync(lambda: then(parse_json(raw)))


def check_listed(content: Any, field: str, limit: int, what: str, setting: str) -> None:
    """``LimitError`` if ``content`` is an object whose ``field`` is a list of more than ``limit`` entries.

    Checked on the parsed JSON, before any entry is validated: a count over its bound costs no more
    than its parse.
    """
    if isinstance(content, dict) and isinstance(listed := content.get(field), list):
        check_count(listed, limit, what, setting)
