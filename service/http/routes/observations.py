"""``POST /v1/observations``: batches for many sessions in one request, each applied on its own."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ValidationError

from latentcast.errors import LimitError
from service.forecasting import ForecastReply
from service.http.dependencies import SECURED, caller_of, services_of
from service.http.errors import item_error, validation_body
from service.http.json_reader import check_listed
from service.http.routes import error_responses
from service.http.routes.lean import LeanRoute, body_schema, read_content, validated
from service.http.schemas.bulk import BulkAppendItem, BulkAppendRequest, BulkAppendResponse, Envelope
from service.http.schemas.requests import observations
from service.sessions.bulk import AppendItem
from service.sessions.replies import SessionReply

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


ItemBounds = Callable[[Any], None]


def parse_items(
    raw: list[Any], model: type[BaseModel], limit: int, bounds: ItemBounds
) -> list[tuple[int, BaseModel | dict[str, Any]]]:
    """Each item validated on its own, once ``bounds`` passes it: the item, or the body of what is
    wrong with it (422, or 413 for a count over its bound).

    ``LimitError`` when there are more than ``limit`` items (the whole request is refused).
    """
    check_item_count(raw, limit)
    return [over_bounds(item, bounds) or validate_item(item, model) for item in raw]


def parse_appends(raw: list[Any], limit: int, max_batch: int) -> list[tuple[int, AppendItem | dict[str, Any]]]:
    """``parse_items`` of bulk append items, as ``AppendItem``s, none of more than ``max_batch`` observations."""
    check_item_count(raw, limit)

    def bounds(item: Any) -> None:
        check_listed(item, "observations", max_batch, "batch", "MAX_BATCH")

    parsed: list[tuple[int, AppendItem | dict[str, Any]]] = []
    for item in raw:
        refusal = over_bounds(item, bounds)
        if refusal is not None:
            parsed.append(refusal)
            continue
        status, valid = validate_item(item, BulkAppendItem)
        if isinstance(valid, BulkAppendItem):
            parsed.append((status, AppendItem(valid.session_id, valid.seq, observations(valid.observations))))
        else:
            assert isinstance(valid, dict)
            parsed.append((status, valid))
    return parsed


def over_bounds(item: Any, bounds: ItemBounds) -> tuple[int, dict[str, Any]] | None:
    """The status and error body of an item that ``bounds`` refuses, or None."""
    try:
        bounds(item)
    except LimitError as exc:
        return item_error(exc)
    return None


def check_item_count(raw: Any, limit: int) -> None:
    """``LimitError`` if ``raw`` is a list of more than ``limit`` items (checked before any item is read)."""
    if isinstance(raw, list) and len(raw) > limit:
        raise LimitError(f"{len(raw)} items; the limit is {limit} (LATENTCAST_MAX_BULK_ITEMS)", limit=limit)


def validate_item(item: Any, model: type[BaseModel]) -> tuple[int, BaseModel | dict[str, Any]]:
    try:
        return 200, model.model_validate(item)
    except ValidationError as exc:
        return 422, validation_body([dict(e) for e in exc.errors(include_url=False)])


def bulk_response(parsed: list[tuple[int, Any]], results: list[Reply | Exception]) -> Response:
    """The reply of a bulk request: ``results`` are those of the items that parsed, in order."""
    return Response(b'{"items":' + items_json(parsed, results) + b"}", media_type="application/json")


def items_json(parsed: list[tuple[int, Any]], results: list[Reply | Exception]) -> bytes:
    """The JSON list of a bulk reply's items: ``{"status": 200, "reply": ...}`` or
    ``{"status", "error": {"code", "message", ...}}``; ``results`` are those of the items that parsed.

    Encoded in one call: hundreds of replies' JSON joined by hand cost more than orjson takes
    to walk them."""
    answers = iter(results)
    return orjson.dumps(
        [{"status": status, "error": item} if status != 200 else item_dict(next(answers)) for status, item in parsed]
    )


def item_dict(result: Reply | Exception) -> dict[str, Any]:
    if isinstance(result, Exception):
        status, body = item_error(result)
        return {"status": status, "error": body}
    return {"status": 200, "reply": result.to_dict()}


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
    limits = svc.settings

    def appends(content: Any) -> list[tuple[int, AppendItem | dict[str, Any]]]:
        check_item_count(content.get("items") if isinstance(content, dict) else None, limits.max_bulk_items)
        return parse_appends(validated(Envelope, content).items, limits.max_bulk_items, limits.max_batch)

    parsed = await read_content(request, appends, limits.inline_body_bytes)
    batches = [item for _, item in parsed if isinstance(item, AppendItem)]
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
