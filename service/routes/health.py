"""Probes and metrics: ``/healthz`` (alive), ``/readyz`` (can serve), ``/metrics`` (Prometheus)."""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import APIRouter, Response

from data.errors import UnavailableError
from service.dependencies import ServicesDep
from service.metrics import CONTENT_TYPE
from service.routes import error_responses
from service.schemas import StatusResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=StatusResponse, response_model_exclude_none=True, summary="Liveness")
async def healthz() -> dict[str, Any]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", response_model=StatusResponse, summary="Readiness", responses=error_responses(503))
async def readyz(svc: ServicesDep) -> dict[str, Any]:
    """Ready when a champion is loaded and the session store answers; 503 otherwise."""
    svc.pool.require_champion()
    await svc.store.ping()
    return {"status": "ready", "store": svc.store.kind, "champions": svc.pool.champions()}


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"}},
)
async def metrics(svc: ServicesDep) -> Response:
    sessions: int | None = None
    with contextlib.suppress(UnavailableError):  # a store outage must not hide the other metrics
        sessions = await svc.store.count()
    return Response(svc.metrics.render(sessions), media_type=CONTENT_TYPE)
