"""Request and response bodies of the HTTP API (pydantic), with the examples shown in OpenAPI.

Only the routes use these; the service's logic takes and returns plain
dataclasses (``Observation``, ``Forecast``, ``SessionReply``, ...).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from models.predictor import MAX_PRICE, MIN_PRICE, Observation

MAX_LABEL = 64
CLOSES = [101.2, 101.9, 100.7, 102.3, 103.0]
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


# What the schema promises of every value (``Predictor.validate`` enforces it, naming the
# observation's seq): prices from MIN_PRICE to MAX_PRICE, volumes not negative.
PRICE_BOUNDS: dict[str, Any] = {"minimum": MIN_PRICE, "maximum": MAX_PRICE}
VOLUME_BOUNDS: dict[str, Any] = {"minimum": 0}


def _price() -> Any:
    return Field(default=None, json_schema_extra=PRICE_BOUNDS)


class ObservationIn(BaseModel):
    """One bar; a bare number stands for {"close": number}."""

    model_config = ConfigDict(extra="forbid", strict=True)

    close: float = Field(json_schema_extra=PRICE_BOUNDS)
    open: float | None = _price()
    high: float | None = _price()
    low: float | None = _price()
    volume: float | None = Field(default=None, json_schema_extra=VOLUME_BOUNDS)
    time: str | None = Field(
        default=None, max_length=MAX_LABEL, description="a label, e.g. the date; not used by models"
    )

    @model_validator(mode="before")
    @classmethod
    def _number_is_a_close(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"close": value}
        if not isinstance(value, dict | ObservationIn):
            raise ValueError("an observation is a number (a close price) or an object with a close")
        return value

    def to_observation(self) -> Observation:
        return Observation(self.close, self.open, self.high, self.low, self.volume, self.time)


# in the schema, an observation is what clients may send: a number or an object
ObservationField = Annotated[
    ObservationIn,
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "description": "a close price", **PRICE_BOUNDS},
                ObservationIn.model_json_schema(),
            ]
        }
    ),
]


def observations(items: list[ObservationIn]) -> list[Observation]:
    return [item.to_observation() for item in items]


# the schema says what ``_one_of_mode_or_version`` checks: never a mode and a version both
NOT_MODE_AND_VERSION: dict[str, Any] = {
    "not": {
        "required": ["mode", "version"],
        "properties": {"mode": {"type": "string"}, "version": {"type": "string"}},
    }
}


class ModelChoice(BaseModel):
    """Which model: a version, or the champion of a mode (latent when neither is given)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=NOT_MODE_AND_VERSION)

    mode: Literal["ar", "latent"] | None = Field(default=None, description="use this mode's champion")
    version: str | None = Field(default=None, max_length=MAX_LABEL, description="use this exact version")

    @model_validator(mode="after")
    def _one_of_mode_or_version(self) -> ModelChoice:
        if self.mode is not None and self.version is not None:
            raise ValueError("give a mode or a version, not both")
        return self


class ForecastRequest(ModelChoice):
    observations: list[ObservationField] = Field(min_length=1, description="the history, oldest first")


class OpenSessionRequest(ModelChoice):
    history: list[ObservationField] = Field(default_factory=list, description="warm-up observations, seq 0..n-1")
    ticker: str | None = Field(default=None, max_length=MAX_LABEL, description="a label for people; not used by models")
    calibration: Literal["adaptive"] | None = Field(
        default=None,
        description="`adaptive`: as each new price reveals the outcome of earlier forecasts, the session's "
        "quantile offsets move toward nominal coverage (adaptive conformal inference); null: the model's "
        "own (conformal) quantiles",
    )


class AppendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    # not strict: JSON Schema counts 5.0 as the integer 5, and so does this field
    seq: int = Field(ge=0, strict=False, description="seq of the first observation: the session's next_seq, or a retry")
    observations: list[ObservationField] = Field(min_length=1, description="new observations, oldest first")

    @field_validator("seq", mode="before")
    @classmethod
    def _seq_is_a_number(cls, value: Any) -> Any:
        # lax integers would also take true and "5", which the schema does not allow
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("seq must be an integer")
        return value


class MigrateRequest(ModelChoice):
    """Migrate to a version, or to a mode's champion (the session's own mode when neither is given)."""


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


class ModelVersionOut(BaseModel):
    version: str
    mode: str
    created: str
    champion: bool
    loaded: bool
    metrics: dict[str, Any]
    data_span: dict[str, Any]
    config: dict[str, Any]


class BrokenVersionOut(BaseModel):
    version: str
    reason: str


class ModelsResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "champions": {"ar": None, "latent": MODEL_EXAMPLE["version"]},
                    "versions": [
                        {
                            **MODEL_EXAMPLE,
                            "created": "2026-11-25T10:15:30.123456+00:00",
                            "champion": True,
                            "loaded": True,
                            "metrics": {"val_loss": 0.412},
                            "data_span": {"source": "bundled", "first": "2000-03-01", "last": "2013-03-01"},
                            "config": {"mode": "latent", "cell": "GRU", "hidden_size": 64, "horizon": 5},
                        }
                    ],
                }
            ]
        }
    )

    champions: dict[str, str | None] = Field(description="the version each mode serves to new sessions")
    versions: list[ModelVersionOut]
    broken: list[BrokenVersionOut] = Field(
        default_factory=list, description="version folders that do not read, never served"
    )


class ComparePlotsResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"plots": ["cost_per_forecast.png", "forecast_vs_actual.png"]}]}
    )

    plots: list[str] = Field(description="file names, each served at /v1/models/compare/plots/{name}")


class TickerOut(BaseModel):
    ticker: str
    first: str = Field(description="first trading day (ISO date)")
    last: str = Field(description="last trading day (ISO date)")
    rows: int = Field(description="trading days")


class TickersResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "source": "bundled",
                    "tickers": [{"ticker": "IBM", "first": "2000-03-01", "last": "2013-03-01", "rows": 3270}],
                }
            ]
        }
    )

    source: str = Field(description="where the prices come from (the bundled real prices: see data/NOTICE)")
    tickers: list[TickerOut]


class BarOut(BaseModel):
    """A daily bar, adjusted for splits and dividends, in the shape an observation is sent."""

    close: float
    open: float
    high: float
    low: float
    volume: float
    time: str = Field(description="the trading day (ISO date)")


BAR_EXAMPLE: dict[str, Any] = {
    "close": 80.44,
    "open": 79.66,
    "high": 80.87,
    "low": 79.25,
    "volume": 6.8e6,
    "time": "2005-01-03",
}


class PricesResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"ticker": "IBM", "source": "bundled", "warmup": [], "observations": [BAR_EXAMPLE]}]
        }
    )

    ticker: str
    source: str
    warmup: list[BarOut] = Field(description="up to `warmup` bars before the start day, oldest first")
    observations: list[BarOut] = Field(
        description="up to `count` bars from the first trading day on or after `start`, oldest first"
    )


class ReloadResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"champions": {"latent": MODEL_EXAMPLE["version"]}, "changed": {}, "failed": {}}]
        }
    )

    champions: dict[str, str]
    changed: dict[str, str] = Field(description="modes whose champion this reload replaced")
    failed: dict[str, str] = Field(description="modes whose new champion did not load (the old one keeps serving)")


JOB_EXAMPLE: dict[str, Any] = {
    "job_id": "20261125T223000-4be1a9",
    "status": "succeeded",
    "stage": "done",
    "created": "2026-11-25T22:30:00+00:00",
    "started": "2026-11-25T22:30:01+00:00",
    "finished": "2026-11-25T22:31:12+00:00",
    "seconds": 71.2,
    "pid": 4242,
    "host": "api-1",
    "data": {"source": "yfinance", "reason": "downloaded 12750 rows", "tickers": ["AAPL", "MSFT"]},
    "modes": [
        {
            "mode": "latent",
            "challenger": "latent-20261125T223040-9c1d2e",
            "champion_before": "latent-20261124T223039-1a2b3c",
            "champion_after": "latent-20261125T223040-9c1d2e",
            "promoted": True,
            "reason": "challenger loss 0.003601 is below champion loss 0.003650 x (1 - margin 0.005) = 0.003632",
        }
    ],
    "recovered_lock": None,
    "error": None,
}


class JobResponse(BaseModel):
    """A retrain job's report, as the job writes it at every stage."""

    model_config = ConfigDict(json_schema_extra={"examples": [JOB_EXAMPLE]})

    job_id: str
    status: Literal["queued", "running", "succeeded", "failed", "skipped", "crashed"] = Field(
        description="skipped: another retrain held the lock; crashed: its process died without finishing"
    )
    stage: str
    created: str
    started: str | None = None
    finished: str | None = None
    seconds: float | None = None
    pid: int | None = None
    host: str
    data: dict[str, Any] = Field(description="the prices used: source, why that source, tickers, span")
    modes: list[dict[str, Any]] = Field(description="per mode: challenger, champion, losses, decision and why")
    recovered_lock: dict[str, Any] | None = Field(default=None, description="a stale lock left by a dead job")
    error: str | None = None


class JobListResponse(BaseModel):
    jobs: list[JobResponse]


class FailingChampion(BaseModel):
    version: str | None = Field(description="the version the champion pointer names; null if the pointer is refused")
    reason: str
    failures: int = Field(description="loads failed in a row")
    retry_in_seconds: float = Field(description="until the next try (a reload tries at once)")


class StatusResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"status": "ready", "store": "memory", "champions": {"latent": MODEL_EXAMPLE["version"]}}]
        }
    )

    status: str
    store: str | None = None
    champions: dict[str, str] | None = None
    failing: dict[str, FailingChampion] | None = Field(
        default=None, description="champions promoted that do not load, by mode (the previous one serves)"
    )


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str = Field(description="stable, for programs: invalid_data, conflict, not_found, ...")
    message: str = Field(description="for people")


class ErrorResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"error": ERROR_EXAMPLE}]})

    error: ErrorBody


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
