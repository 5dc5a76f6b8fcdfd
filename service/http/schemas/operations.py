"""What the operator's routes answer: the registry's models, the prices, retrain jobs and health."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.http.schemas.responses import MODEL_EXAMPLE


class ModelVersionOut(BaseModel):
    version: str
    mode: str
    created: str
    champion: bool
    loaded: bool
    promoted: bool = Field(
        description="ever promoted (the champion now or before); false for a challenger never promoted"
    )
    metrics: dict[str, Any]
    data_span: dict[str, Any]
    config: dict[str, Any]


class BrokenVersionOut(BaseModel):
    version: str
    reason: str


class PromotionsResponse(BaseModel):
    """The champions' promotions, newest first."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "promotions": [
                        {
                            "job_id": "20261125T223000-9c1d2e",
                            "finished": "2026-11-25T22:31:12+00:00",
                            "mode": "latent",
                            "version": "latent-20261125T223040-9c1d2e",
                            "replaced": "latent-20261124T223039-1a2b3c",
                            "rule": "better",
                            "statistic": -1.912,
                            "p_better": 0.0291,
                            "p_worse": 0.9709,
                            "days": 125,
                            "reason": "the challenger is better at level 0.1: DM statistic -1.912 over 125 days, "
                            "p(challenger better) = 0.0291, p(challenger worse) = 0.9709",
                        }
                    ]
                }
            ]
        }
    )

    promotions: list[dict[str, Any]]


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
                            "promoted": True,
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
            "test": {
                "promote": True,
                "rule": "better",
                "statistic": -1.912,
                "p_better": 0.0291,
                "p_worse": 0.9709,
                "mean_difference": -0.000049,
                "days": 125,
                "level": 0.1,
                "stale_days": 126,
                "newer_days": 21,
            },
            "promoted": True,
            "reason": "the challenger is better at level 0.1: DM statistic -1.912 over 125 days, "
            "p(challenger better) = 0.0291, p(challenger worse) = 0.9709",
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
