"""``create_app``: the FastAPI app, its models loaded in the lifespan, never at import time."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import torch
from fastapi import FastAPI
from threadpoolctl import threadpool_limits

from service.batching import in_thread
from service.config import Settings, get_settings
from service.forecasting import ForecastService
from service.http.auth import KeyRing
from service.http.dependencies import Services
from service.http.errors import install_error_handlers
from service.http.logs import redact_session_ids
from service.http.middleware import RequestGuard
from service.http.routes import data, docs, forecast, health, jobs, live, models, observations, page, sessions, stream
from service.http.routes.lean import document_bodies
from service.http.schemas.bulk import BulkAppendRequest, BulkForecastRequest
from service.http.schemas.requests import (
    AppendRequest,
    ForecastRequest,
    MigrateRequest,
    ObservationIn,
    OpenSessionRequest,
)
from service.jobs.retraining import RetrainLauncher
from service.metrics import ServiceMetrics
from service.model_pool import Backoff, ModelBounds, ModelPool
from service.sessions.planner import BatchSettings
from service.sessions.service import SessionService
from service.sessions.shadow_steps import shadow_runner
from service.stores import SessionStore, build_store
from training.leases import Leases
from training.registry import Registry

log = logging.getLogger(__name__)

# the session routes first: clients call them most
ROUTERS = (
    sessions.router,
    observations.router,
    stream.router,
    forecast.router,
    models.router,
    live.router,
    live.compare_router,
    data.router,
    jobs.router,
    health.router,
    page.router,
    docs.router,
)

DESCRIPTION = """
Streaming price forecasts. Open a session, POST observations as they arrive
(each batch carries `seq`, the index of its first observation) and get the
next forecast: quantiles of the cumulative log return and of the price for
each horizon. The model's hidden state is kept between requests.

Errors are `{"error": {"code", "message", ...}}`. With API keys configured,
every `/v1` route needs the `X-API-Key` header.

A whole market at each bar: `POST /v1/observations` carries batches for many
sessions, each answered on its own, and `POST /v1/forecast` takes
`{"items": [...]}` for many stateless forecasts.

## WebSocket feed: `/v1/stream`

One connection carries appends for any of the caller's sessions; the API key
goes in the `X-API-Key` header of the handshake (a refused handshake gets the
HTTP error, e.g. 401). Send text frames

    {"id": 1, "items": [{"session_id": "...", "seq": 5, "observations": [103.4]}, ...]}

and each message is answered by one frame `{"id": 1, "items": [...]}` listing,
in order, `{"status": 200, "reply": <the append's reply>}` or
`{"status": 409, "error": {"code", "message", "expected_seq", ...}}`: the same
rules and errors as `POST /v1/observations`. Messages may be sent without
waiting for replies; they are applied in order. A message that is not such an
object is answered `{"id", "status": 422, "error"}`. A client that does not
read its replies is disconnected with close code 4008 once
`LATENTCAST_STREAM_QUEUE` replies wait; a message over
`LATENTCAST_MAX_BODY_BYTES` closes the connection with code 1009, and a key
holding `LATENTCAST_MAX_STREAMS_PER_KEY` connections is refused another (429).
After a reconnection, send again what
was not answered, with the same seqs: what was applied is answered from the
stored replies, once. The Python client (`latentcast_client`, in `clients/python`) does all
of this; `docs/streaming.md` has examples.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for ``settings`` (default: from the environment). Models load when it starts."""
    settings = settings or get_settings()
    redact_session_ids()
    registry = Registry(settings.artifacts)
    pool = ModelPool(
        registry,
        idle_seconds=settings.session_ttl_seconds,
        bounds=ModelBounds(settings.max_horizon, settings.max_quantiles),
        backoff=Backoff(settings.champion_retry_seconds, settings.champion_retry_max_seconds),
    )
    metrics = ServiceMetrics(pool)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        torch.set_num_threads(settings.torch_threads)
        threadpool_limits(settings.torch_threads, user_api="blas")  # the numpy kernel's matrix products
        result = await in_thread(pool.refresh)
        metrics.refreshed(result)
        if not result.champions:
            log.warning("no champion in %s: not ready until one is promoted", settings.artifacts)
        store = build_store(settings, on_evict=metrics.evicted)
        leases = Leases(settings.artifacts)

        async def hold() -> None:
            await hold_versions(pool, store, leases, settings.registry_lease_seconds)

        await hold()
        app.state.services = Services(
            settings=settings,
            keys=app.state.keys,
            pool=pool,
            metrics=metrics,
            store=store,
            sessions=SessionService(
                store,
                pool,
                metrics,
                settings.max_batch,
                settings.max_history,
                batching=BatchSettings(settings.batch_enabled, settings.batch_wait_ms / 1000, settings.batch_max),
                inline_observations=settings.inline_observations,
                live_scores=settings.live_scores,
                shadows=shadow_runner(settings, pool),
            ),
            forecasts=ForecastService(pool, settings.max_history),
            jobs=RetrainLauncher(settings),
        )
        poller = None
        if settings.registry_poll_seconds > 0:
            poller = asyncio.create_task(poll_registry(pool, metrics, settings.registry_poll_seconds, hold))
        try:
            with collector_tuned(settings.gc_freeze, settings.gc_threshold):
                yield
        finally:
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
            sessions_service: SessionService = app.state.services.sessions
            del app.state.services
            await sessions_service.close()
            await store.close()
            leases.release()

    # the routers' routes (their paths, tags and responses complete) are the app's own: FastAPI
    # matches an included router's routes through a layer of its own, at every request
    # (docs/performance.md)
    routes = [route for router in ROUTERS for route in router.routes]
    app = FastAPI(
        title="latentcast",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        routes=routes,
        docs_url=None,  # service/http/routes/docs.py serves /docs and /redoc from the package, not from a CDN
        redoc_url=None,
        # the service exports its own metrics (service/metrics.py); FastAPI's OpenTelemetry, off, no longer
        # looks for a provider at every request
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.keys = KeyRing(settings.api_keys, settings.admin_key)
    install_error_handlers(app)
    app.add_middleware(RequestGuard, max_body_bytes=settings.max_body_bytes, metrics=metrics)
    document_bodies(
        app,
        AppendRequest,
        BulkAppendRequest,
        ForecastRequest,
        BulkForecastRequest,
        OpenSessionRequest,
        MigrateRequest,
        ObservationIn,
    )
    return app


@contextlib.contextmanager
def collector_tuned(freeze: bool, threshold: int) -> Iterator[None]:
    """The garbage collector as set for serving, then as it was.

    ``freeze`` moves every object alive now (modules, models, the app) to a generation the
    collector never walks: they live as long as the process, and walking them at every full
    collection was most of the collector's cost. ``threshold`` spaces young collections out
    (Python's default, 700 allocations, is a few requests). The settings are process-wide: of
    several apps in one process (tests), the first to stop restores them.
    """
    before = gc.get_threshold()
    if freeze:
        gc.freeze()
    if threshold:
        gc.set_threshold(threshold, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        if freeze:
            gc.unfreeze()


async def hold_versions(pool: ModelPool, store: SessionStore, leases: Leases, seconds: float) -> None:
    """Write this process's lease: the versions it has loaded and, with the memory store, those its sessions use.

    Redis sessions are not listed: they outlive this process, so a prune reads them from Redis itself
    (and a scan of every session at every poll of every worker would cost Redis more than the prune).
    """
    pinned = await store.versions_in_use() if store.kind == "memory" else {}
    try:
        await in_thread(leases.write, {*pool.loaded(), *pinned}, seconds)
    except OSError as exc:
        log.warning("could not write the lease of the versions in use in %s: %s", leases.folder, exc.strerror)


async def poll_registry(
    pool: ModelPool, metrics: ServiceMetrics, seconds: float, hold: Callable[[], Awaitable[None]]
) -> None:
    """Look for new champions every ``seconds``, then renew the lease, until cancelled.

    An unreadable registry is logged when it starts failing (with its traceback)
    and when it is readable again, at debug level in between: a registry down for
    an hour must not write a traceback at every poll.
    """
    failing = False
    while True:
        await asyncio.sleep(seconds)
        try:
            metrics.refreshed(await in_thread(pool.refresh))
            await hold()
        except Exception:
            # an unreadable registry (a disk hiccup, a half-copied folder) must not stop the polling
            if not failing:
                log.exception("looking for new champions failed; trying again every %.0f s", seconds)
            else:
                log.debug("looking for new champions still fails", exc_info=True)
            failing = True
            continue
        if failing:
            log.info("the registry is readable again")
        failing = False
