"""What ``GET /v1/models/live`` answers: the running scores of settled forecasts per model version and horizon."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from service.http.schemas.responses import MODEL_EXAMPLE


class LiveHorizonOut(BaseModel):
    horizon: int
    count: int = Field(description="settled forecasts of this horizon scored")
    since: float | None = Field(description="when the first was scored, seconds since the epoch")
    pinball: float | None = Field(description="mean pinball loss over the quantile levels")
    pinball_by_level: dict[str, float | None] = Field(description="mean pinball loss of each quantile level")
    band: list[float] = Field(description="the outer quantile levels, the band that coverage counts")
    coverage: float | None = Field(description="share of outcomes inside the band, bounds included")
    expected_coverage: float = Field(description="the share the band promises")
    kupiec_p: float | None = Field(description="Kupiec's test of coverage against expected_coverage")
    mae: float | None = Field(description="mean absolute error of the median log-return forecast")
    mae_random_walk: float | None = Field(description="that of the random walk (a forecast log return of 0)")
    mae_ratio: float | None = Field(description="mae over mae_random_walk: below 1 beats the random walk")


class LiveModelOut(BaseModel):
    version: str
    mode: str
    champion: bool
    horizons: list[LiveHorizonOut]


class DriftRetrainOut(BaseModel):
    job_id: str = Field(description="as GET /v1/jobs/{id} reads it")
    created: str = Field(description="when it was queued (ISO 8601, UTC)")
    status: str
    reason: str = Field(description="the drift check's reason, as the scheduler logged it")


class LiveResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "enabled": True,
                    "models": [
                        {
                            **MODEL_EXAMPLE,
                            "champion": True,
                            "horizons": [
                                {
                                    "horizon": 1,
                                    "count": 5120,
                                    "since": 1796515200.0,
                                    "pinball": 0.0041,
                                    "pinball_by_level": {"0.1": 0.0029, "0.5": 0.0064, "0.9": 0.0031},
                                    "band": [0.1, 0.9],
                                    "coverage": 0.79,
                                    "expected_coverage": 0.8,
                                    "kupiec_p": 0.08,
                                    "mae": 0.0128,
                                    "mae_random_walk": 0.0127,
                                    "mae_ratio": 1.008,
                                }
                            ],
                        }
                    ],
                }
            ]
        }
    )

    enabled: bool = Field(description="whether this process scores forecasts (LATENTCAST_LIVE_SCORES)")
    models: list[LiveModelOut] = Field(description="per model version, champions first")
    drift_retrain: DriftRetrainOut | None = Field(
        default=None, description="the last retrain the scheduler started on drift, if any (docs/live.md)"
    )


class PairedHorizonOut(BaseModel):
    horizon: int
    count: int = Field(description="paired loss differences kept (the last LATENTCAST_SHADOW_PAIRS)")
    sessions: str = Field(
        description='"averaged per time": the differences settled at the same observation time were averaged '
        'before the test (every one had a time); "independent": each was tested as one of a single stream'
    )
    tested: int = Field(description="values the test ran on: the differences, or their means per time")
    mean_difference: float | None = Field(description="mean pinball loss of the model less its shadow's")
    statistic: float | None = Field(description="Diebold-Mariano statistic (HLN); negative favours the model")
    p_value: float | None = Field(description="its p-value; None with too few pairs to test")
    verdict: str | None = Field(description='"model", "shadow" (the lower loss, at the 5% level) or "tie"')


class PairOut(BaseModel):
    model: str = Field(description="the sessions' version")
    shadow: str = Field(description="the version run beside them, unanswered")
    horizons: list[PairedHorizonOut]


class CompareLiveResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "shadow": 0.1,
                    "pairs": [
                        {
                            "model": "latent-20261202T101530-77e0d1",
                            "shadow": "ar-20261202T101530-3c9a40",
                            "horizons": [
                                {
                                    "horizon": 1,
                                    "count": 2000,
                                    "sessions": "averaged per time",
                                    "tested": 180,
                                    "mean_difference": -0.00021,
                                    "statistic": -2.31,
                                    "p_value": 0.021,
                                    "verdict": "model",
                                }
                            ],
                        }
                    ],
                }
            ]
        }
    )

    shadow: float = Field(description="the fraction of new sessions given shadows (LATENTCAST_SHADOW)")
    pairs: list[PairOut] = Field(description="per pair of versions that settled the same forecasts")
