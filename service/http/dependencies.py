"""What routes depend on: the app's services and the caller behind the request."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from starlette.requests import HTTPConnection

from latentcast.errors import UnavailableError
from service.config import Settings
from service.forecasting import ForecastService
from service.http.auth import API_KEY_HEADER, Caller, KeyRing
from service.jobs.retraining import RetrainLauncher
from service.metrics import ServiceMetrics
from service.model_pool import ModelPool
from service.sessions.service import SessionService
from service.stores import SessionStore

api_key = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="needed on every /v1 route when keys are configured"
)


@dataclass
class Services:
    """Everything one app serves with, built in its lifespan."""

    settings: Settings
    keys: KeyRing
    pool: ModelPool
    metrics: ServiceMetrics
    store: SessionStore
    sessions: SessionService
    forecasts: ForecastService
    jobs: RetrainLauncher
    # per API key's owner id: the WebSocket connections it holds open (service/http/routes/stream.py)
    streams: Counter[str] = field(default_factory=Counter)


# The dependencies are coroutines although they do not await: FastAPI runs a plain function
# dependency in a worker thread, a hop that costs more than the whole session step.


async def services(request: Request) -> Services:
    return services_of(request)


async def caller(request: Request, key: Annotated[str | None, Security(api_key)] = None) -> Caller:
    keys: KeyRing = request.app.state.keys
    return keys.caller(key)


# The session append route, the one clients call at every new price, reads its services and
# caller with these plain calls instead (service/http/routes/lean.py, docs/performance.md).
# It declares ``SECURED`` so that its OpenAPI operation is the same as with ``CallerDep``.
SECURED: dict[str, Any] = {"security": [{api_key.scheme_name: []}]}


def services_of(request: HTTPConnection) -> Services:
    found: Services | None = getattr(request.app.state, "services", None)
    if found is None:
        raise UnavailableError("the service is starting: models are not loaded yet")
    return found


def caller_of(request: HTTPConnection) -> Caller:
    """``caller``'s answer: the key is read as ``APIKeyHeader`` reads it (empty is missing)."""
    keys: KeyRing = request.app.state.keys
    return keys.caller(request.headers.get(API_KEY_HEADER) or None)


async def admin(who: Annotated[Caller, Depends(caller)]) -> Caller:
    return KeyRing.require_admin(who)


ServicesDep = Annotated[Services, Depends(services)]
CallerDep = Annotated[Caller, Depends(caller)]
AdminDep = Annotated[Caller, Depends(admin)]
