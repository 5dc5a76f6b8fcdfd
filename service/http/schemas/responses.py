"""What the forecast and session routes answer, and the one error shape every route shares, with the
examples OpenAPI shows (the bulk and operator bodies reuse them)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

FORECAST_EXAMPLE: dict[str, Any] = {
    "as_of_seq": 4,
    "horizons": [1, 2, 3],
    "quantiles": [0.1, 0.5, 0.9],
    "log_return": [[-0.021, 0.0004, 0.0215], [-0.029, 0.0008, 0.0302], [-0.036, 0.0011, 0.0371]],
    "price": [[100.87, 103.04, 105.24], [100.06, 103.08, 106.15], [99.36, 103.11, 106.87]],
}
MODEL_EXAMPLE: dict[str, Any] = {"mode": "latent", "version": "latent-20261125T101530-3fa2c1"}
ERROR_EXAMPLE: dict[str, Any] = {
    "code": "conflict",
    "message": "seq 12 leaves a gap: the session expects seq 10",
    "expected_seq": 10,
    "reason": "gap",
}
SESSION_EXAMPLE: dict[str, Any] = {
    "session_id": "Xq3V0p1bq2m1mRkK8YqH0aF4vQ6yZ2Lw",
    "model": MODEL_EXAMPLE,
    "next_seq": 5,
}


class ModelOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [MODEL_EXAMPLE]})

    mode: str
    version: str


class ForecastOut(BaseModel):
    """Quantiles of the cumulative log return from the last observation, and the prices they give."""

    model_config = ConfigDict(json_schema_extra={"examples": [FORECAST_EXAMPLE]})

    as_of_seq: int = Field(description="seq of the last observation the forecast has seen")
    horizons: list[int]
    quantiles: list[float]
    log_return: list[list[float]] = Field(description="[horizon][quantile]")
    price: list[list[float]] = Field(description="[horizon][quantile]: last close * exp(log_return)")


class ForecastResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"model": MODEL_EXAMPLE, "forecast": FORECAST_EXAMPLE}]})

    model: ModelOut
    forecast: ForecastOut


class SessionResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{**SESSION_EXAMPLE, "forecast": FORECAST_EXAMPLE}]})

    session_id: str
    model: ModelOut
    next_seq: int = Field(description="seq the next batch must carry (observations applied so far)")
    forecast: ForecastOut | None = Field(description="null while the session has too little history")
    needs: int | None = Field(
        default=None,
        description="only when forecast is null: how many more observations the session needs before its first "
        "forecast (an ar model reads a full window of returns, a latent one a first return)",
        examples=[56],
    )


class SessionInfoResponse(SessionResponse):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **SESSION_EXAMPLE,
                    "forecast": FORECAST_EXAMPLE,
                    "ticker": "IBM",
                    "created": 1795600000.25,
                    "updated": 1795600042.5,
                    "retained": 5,
                }
            ]
        }
    )

    ticker: str | None
    created: float = Field(description="seconds since the epoch")
    updated: float = Field(description="seconds since the epoch of the last change")
    retained: int = Field(description="observations kept for migration: the last ones before next_seq")
    adaptive_offsets: list[list[float]] | None = Field(
        default=None,
        description="[horizon][quantile] the session's adaptive offsets, in half-widths of the 10-90% band; "
        "null for a session opened without adaptive calibration",
    )


class MigrationResponse(SessionResponse):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **SESSION_EXAMPLE,
                    "model": {"mode": "latent", "version": "latent-20261202T101530-77e0d1"},
                    "forecast": FORECAST_EXAMPLE,
                    "previous_model": MODEL_EXAMPLE,
                    "replayed": 5,
                    "first_replayed_seq": 0,
                }
            ]
        }
    )

    previous_model: ModelOut
    replayed: int = Field(description="retained observations replayed through the new model")
    first_replayed_seq: int = Field(description="above 0 when the session had seen more than it retained")


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str = Field(description="stable, for programs: invalid_data, conflict, not_found, ...")
    message: str = Field(description="for people")


class ErrorResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"error": ERROR_EXAMPLE}]})

    error: ErrorBody
