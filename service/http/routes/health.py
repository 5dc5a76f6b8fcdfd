"""Probes and metrics: ``/healthz`` (alive), ``/readyz`` (can serve), ``/metrics`` (Prometheus).

A probe that finds the service not ready is the answer it exists to give, not
an error: it is logged once when readiness changes (a warning when lost, info
when back) and at debug level otherwise, where a load balancer probing every
few seconds would fill the log with errors.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response

from latentcast.errors import ForecastError, UnavailableError
from service.http.dependencies import ServicesDep
from service.http.errors import error_response, status_of
from service.http.routes import error_responses
from service.http.schemas.operations import StatusResponse
from service.metrics import CONTENT_TYPE

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])


class Readiness:
    """The last readiness a probe found, to log only its changes."""

    def __init__(self) -> None:
        self.ready: bool | None = None

    def found(self, ready: bool, why: str = "") -> None:
        if ready == self.ready:
            log.debug("readiness probe: %s", why or "ready")
        elif ready:
            log.info("ready")
        else:
            log.warning("not ready: %s", why)
        self.ready = ready


def readiness_of(app: FastAPI) -> Readiness:
    found: Readiness | None = getattr(app.state, "readiness", None)
    if found is None:
        found = app.state.readiness = Readiness()
    return found


@router.get("/healthz", response_model=StatusResponse, response_model_exclude_none=True, summary="Liveness")
async def healthz() -> dict[str, Any]:
    """The process answers."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=StatusResponse,
    response_model_exclude_none=True,
    summary="Readiness",
    responses=error_responses(503),
)
async def readyz(request: Request, svc: ServicesDep) -> dict[str, Any] | Response:
    """Ready when a champion is loaded and the session store answers; 503 otherwise.

    A promoted champion that does not load while its predecessor serves leaves the
    service ready, and is listed under `failing`."""
    readiness = readiness_of(request.app)
    try:
        svc.pool.require_champion()
        await svc.store.ping()
    except ForecastError as exc:
        readiness.found(False, exc.message)
        return error_response(status_of(exc), exc.code, exc.message, **exc.details)
    readiness.found(True)
    ready: dict[str, Any] = {"status": "ready", "store": svc.store.kind, "champions": svc.pool.champions()}
    failing = svc.pool.failing()
    if failing:
        now = svc.pool.now()
        ready["failing"] = {
            mode: {
                "version": f.version,
                "reason": f.reason,
                "failures": f.failures,
                "retry_in_seconds": max(0.0, f.retry_at - now),
            }
            for mode, f in sorted(failing.items())
        }
    return ready


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
    with contextlib.suppress(UnavailableError):
        svc.metrics.live.update(await svc.store.live_sums())
    return Response(svc.metrics.render(sessions), media_type=CONTENT_TYPE)
