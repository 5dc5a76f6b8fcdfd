"""Bulk bodies: many sessions' batches or many histories in one request, each item answered on its own."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.http.schemas.requests import MAX_LABEL, AppendRequest, ForecastRequest
from service.http.schemas.responses import (
    ERROR_EXAMPLE,
    FORECAST_EXAMPLE,
    SESSION_EXAMPLE,
    ErrorBody,
    ForecastResponse,
    SessionResponse,
)


class BulkAppendItem(AppendRequest):
    """One session's batch in a bulk append."""

    session_id: str = Field(max_length=MAX_LABEL, description="as returned when the session was opened")


class BulkAppendRequest(BaseModel):
    """Batches for many sessions, each applied on its own (as `POST /v1/sessions/{id}/observations`)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    items: list[BulkAppendItem] = Field(
        min_length=1, description="at most LATENTCAST_MAX_BULK_ITEMS; a session's items are applied in order"
    )


class BulkForecastRequest(BaseModel):
    """Many histories, each forecast on its own (as a single `POST /v1/forecast`)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    items: list[ForecastRequest] = Field(min_length=1, description="at most LATENTCAST_MAX_BULK_ITEMS")


class Envelope(BaseModel):
    """A bulk body before its items are validated, each on its own: one bad item refuses only itself."""

    model_config = ConfigDict(extra="forbid", strict=True)

    items: list[Any] = Field(min_length=1)


class ItemError(BaseModel):
    status: int = Field(description="the HTTP status the item would get alone")
    error: ErrorBody


class BulkAppendItemOut(BaseModel):
    status: Literal[200]
    reply: SessionResponse


class BulkAppendResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {"status": 200, "reply": {**SESSION_EXAMPLE, "forecast": FORECAST_EXAMPLE}},
                        {"status": 409, "error": ERROR_EXAMPLE},
                    ]
                }
            ]
        }
    )

    items: list[BulkAppendItemOut | ItemError] = Field(description="one per item, in the request's order")


class BulkForecastItemOut(BaseModel):
    status: Literal[200]
    reply: ForecastResponse


class BulkForecastResponse(BaseModel):
    items: list[BulkForecastItemOut | ItemError] = Field(description="one per item, in the request's order")
