"""``POST /v1/observations``: batches for many sessions in one request, each applied on its own."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ValidationError

from data.errors import LimitError
from service.dependencies import SECURED, caller_of, services_of
from service.errors import item_error, validation_body
from service.forecasting import ForecastReply
from service.replies import SessionReply
from service.routes import error_responses
from service.routes.lean import LeanRoute, body_schema, read_body
from service.schemas.bulk import BulkAppendItem, BulkAppendRequest, BulkAppendResponse, Envelope
from service.schemas.requests import observations
from service.sessions import AppendItem

router = APIRouter(prefix="/v1", tags=["sessions"])

Reply = SessionReply | ForecastReply

EXAMPLES: dict[str, Any] = {
    "market": {
        "summary": "the next close of three sessions",
        "value": {
            "items": [
                {"session_id": "Xq3V0p1bq2m1mRkK8YqH0aF4vQ6yZ2Lw", "seq": 5, "observations": [103.4]},
                {"session_id": "b7TQwS0n1kLrA2pY9cVd3eHf6gJm8ZxU", "seq": 12, "observations": [57.9]},
                {"session_id": "p0Lk9JhG8fDs7AqW6eRt5YuI4oP3aSzX", "seq": 250, "observations": [21.02]},
            ]
        },
    },
}


def parse_items(raw: list[Any], model: type[BaseModel], limit: int) -> list[tuple[int, BaseModel | dict[str, Any]]]:
    """Each item validated on its own: the item, or the 422 body of what is wrong with it.

    ``LimitError`` when there are more than ``limit`` items (the whole request is refused).
    """
    if len(raw) > limit:
        raise LimitError(f"{len(raw)} items; the limit is {limit} (LATENTCAST_MAX_BULK_ITEMS)", limit=limit)
    parsed: list[tuple[int, BaseModel | dict[str, Any]]] = []
    for item in raw:
        try:
            parsed.append((200, model.model_validate(item)))
        except ValidationError as exc:
            parsed.append((422, validation_body([dict(e) for e in exc.errors(include_url=False)])))
    return parsed


def bulk_response(parsed: list[tuple[int, Any]], results: list[Reply | Exception]) -> Response:
    """The reply of a bulk request: ``results`` are those of the items that parsed, in order."""
    return Response(b'{"items":' + items_json(parsed, results) + b"}", media_type="application/json")


def items_json(parsed: list[tuple[int, Any]], results: list[Reply | Exception]) -> bytes:
    """The JSON list of a bulk reply's items: ``{"status": 200, "reply": ...}`` or
    ``{"status", "error": {"code", "message", ...}}``; ``results`` are those of the items that parsed."""
    answers = iter(results)
    parts = [
        orjson.dumps({"status": status, "error": item}) if status != 200 else item_json(next(answers))
        for status, item in parsed
    ]
    return b"[" + b",".join(parts) + b"]"


def item_json(result: Reply | Exception) -> bytes:
    if isinstance(result, Exception):
        status, body = item_error(result)
        return orjson.dumps({"status": status, "error": body})
    # a session's reply is JSON already: encoded once, in its step, and kept for retries
    reply = result.to_json() if isinstance(result, SessionReply) else orjson.dumps(result.to_dict())
    return b'{"status":200,"reply":' + reply + b"}"


async def append_many(request: Request) -> Response:
    """Apply a batch to each of many sessions: one request for a whole market's new prices.

    Each item follows the rules of `POST /v1/sessions/{session_id}/observations` on its own: a
    retry gets its first reply and is applied once, a gap or a different overlap is a 409 naming
    `expected_seq`, a session that does not exist or belongs to another key is a 404, a bad
    value is a 422. One item's error never blocks or half-applies another. The reply lists, in
    the request's order, `{"status": 200, "reply": ...}` (the single append's reply) or
    `{"status": ..., "error": {"code", "message", ...}}` (the error the item would get alone).
    Items for one session are applied in their order. The request itself is refused only when it
    is malformed as a whole or holds more than `LATENTCAST_MAX_BULK_ITEMS` items (413)."""
    svc, who = services_of(request), caller_of(request)
    body = await read_body(request, Envelope)
    parsed = parse_items(body.items, BulkAppendItem, svc.settings.max_bulk_items)
    valid = [item for _, item in parsed if isinstance(item, BulkAppendItem)]
    batches = [AppendItem(item.session_id, item.seq, observations(item.observations)) for item in valid]
    replies: list[Reply | Exception] = list(await svc.sessions.append_many(who.owner, batches))
    return bulk_response(parsed, replies)


router.add_api_route(
    "/observations",
    append_many,
    methods=["POST"],
    response_model=BulkAppendResponse,
    summary="Append observations to many sessions",
    responses=error_responses(401, 413, 422, 503),
    openapi_extra=SECURED | body_schema(BulkAppendRequest, EXAMPLES),
    route_class_override=LeanRoute,  # a market feed calls it at every bar
)
