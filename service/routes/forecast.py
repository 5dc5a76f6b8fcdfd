"""``POST /v1/forecast``: a whole history in, the forecast after it out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from service.dependencies import CallerDep, ServicesDep
from service.routes import error_responses
from service.schemas import CLOSES, ForecastRequest, ForecastResponse, observations

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


@router.post(
    "/forecast",
    response_model=ForecastResponse,
    summary="Forecast after a whole history (stateless)",
    responses=error_responses(401, 404, 413, 415, 422, 503),
)
async def forecast(
    body: Annotated[ForecastRequest, Body(openapi_examples=EXAMPLES)], svc: ServicesDep, _: CallerDep
) -> dict[str, Any]:
    """Run the model over `observations` (oldest first) from a zero state and answer, for each
    horizon, quantiles of the cumulative log return and of the price. The same forecast as a
    session fed the same observations one request at a time."""
    reply = await svc.forecasts.forecast(observations(body.observations), body.mode, body.version)
    return reply.to_dict()
