"""``POST /v1/forecast``: a whole history in, the forecast after it out; or many histories, a forecast each."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from service.forecasting import ForecastItem
from service.http.dependencies import CallerDep, ServicesDep
from service.http.json_reader import check_listed
from service.http.routes import error_responses
from service.http.routes.lean import read_content, validated
from service.http.routes.observations import Reply, bulk_response, check_item_count, parse_items
from service.http.schemas.bulk import BulkForecastRequest, BulkForecastResponse, Envelope
from service.http.schemas.requests import CLOSES, ForecastRequest, observations
from service.http.schemas.responses import ForecastResponse

router = APIRouter(prefix="/v1", tags=["forecast"])

EXAMPLES: dict[str, Any] = {
    "closes": {"summary": "closes, latent champion", "value": {"mode": "latent", "observations": CLOSES}},
    "bars": {
        "summary": "bars, an exact version",
        "value": {
            "version": "latent-20261125T101530-3fa2c1",
            "observations": [
                {"close": 101.2, "high": 102.0, "low": 100.1, "volume": 3.1e6, "time": "2024-01-02"},
                {"close": 101.9, "high": 102.4, "low": 100.8, "volume": 2.7e6, "time": "2024-01-03"},
            ],
        },
    },
}


BULK_EXAMPLE: dict[str, Any] = {
    "summary": "three histories, one forecast each",
    "value": {
        "items": [
            {"mode": "latent", "observations": CLOSES},
            {"mode": "ar", "observations": CLOSES},
            {"observations": [57.1, 57.9, 58.3, 57.6, 58.0]},
        ]
    },
}
BODY_SCHEMA = {
    "oneOf": [{"$ref": f"#/components/schemas/{m.__name__}"} for m in (ForecastRequest, BulkForecastRequest)]
}


@router.post(
    "/forecast",
    response_model=ForecastResponse | BulkForecastResponse,
    summary="Forecast after a whole history, or after each of many (stateless)",
    responses=error_responses(401, 404, 413, 415, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": BODY_SCHEMA, "examples": {**EXAMPLES, "many": BULK_EXAMPLE}}},
        }
    },
)
async def forecast(request: Request, svc: ServicesDep, _: CallerDep) -> Any:
    """Run the model over `observations` (oldest first) from a zero state and answer, for each
    horizon, quantiles of the cumulative log return and of the price. The same forecast as a
    session fed the same observations one request at a time.

    With `{"items": [...]}`, each item is such a request (its own `mode` or `version`), for
    scoring a universe at once: the reply lists, in order, `{"status": 200, "reply": ...}` or
    `{"status": ..., "error": {"code", "message", ...}}` (the error the item would get alone);
    one bad item refuses only itself. At most `LATENTCAST_MAX_BULK_ITEMS` items (413 beyond)."""
    limits = svc.settings

    def bounds(item: Any) -> None:
        check_listed(item, "observations", limits.max_history, "observations", "MAX_HISTORY")

    def requests(content: Any) -> ForecastItem | tuple[list[tuple[int, Any]], list[ForecastItem]]:
        """The request's forecasts, built off the loop with the rest of the body's reading when it is large."""
        if not (isinstance(content, dict) and "items" in content):
            bounds(content)
            return forecast_item(validated(ForecastRequest, content))
        check_item_count(content["items"], limits.max_bulk_items)
        parsed = parse_items(validated(Envelope, content).items, ForecastRequest, limits.max_bulk_items, bounds)
        return parsed, [forecast_item(item) for _, item in parsed if isinstance(item, ForecastRequest)]

    body = await read_content(request, requests, limits.inline_body_bytes)
    if isinstance(body, tuple):
        parsed, work = body
        replies: list[Reply | Exception] = list(await svc.forecasts.forecast_many(work))
        return bulk_response(parsed, replies)
    reply = await svc.forecasts.forecast(body.observations, body.mode, body.version)
    return reply.to_dict()


def forecast_item(request: ForecastRequest) -> ForecastItem:
    return ForecastItem(observations(request.observations), request.mode, request.version)
