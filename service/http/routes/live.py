"""Forecast quality measured live: the scores of settled forecasts, per model version and horizon."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.batching import in_thread
from service.http.dependencies import CallerDep, ServicesDep
from service.http.routes import error_responses
from service.http.schemas.live import CompareLiveResponse, LiveResponse
from service.live.pairs import report as pairs_report
from service.live.sums import report

router = APIRouter(prefix="/v1/models", tags=["models"])
DRIFT_JOBS = 20  # the last retrain jobs searched for one started on drift


@router.get(
    "/live",
    response_model=LiveResponse,
    summary="Live forecast quality per model version and horizon",
    responses=error_responses(401, 503),
)
async def live(svc: ServicesDep, _: CallerDep) -> dict[str, Any]:
    """Every answered forecast is scored once its outcome arrives (the h-step forecast made after
    observation n, by observation n + h), once whatever retries and overlapping batches do. Per
    model version (champions first) and horizon: `count` settled since `since` (seconds since the
    epoch), mean `pinball` loss over the quantile levels and per level, `coverage` of the outer
    band (10-90% for the default levels) with Kupiec's test of it (`kupiec_p`; read it for
    horizon 1: the misses of overlapping forecasts are not independent), and the median's `mae`
    against the random walk's (`mae_ratio` below 1 beats it). The sums are the session store's,
    shared by every process on it. `enabled` is false when this process does not score
    (LATENTCAST_LIVE_SCORES). `drift_retrain`: the last retrain the scheduler started on drift
    (among the last jobs kept), and why."""
    live_sums = await svc.store.live_sums()
    svc.metrics.live.update(live_sums)
    job = await in_thread(svc.jobs.last_on_drift, DRIFT_JOBS)
    drift = None
    if job is not None:
        drift = {"job_id": job.job_id, "created": job.created, "status": job.status, "reason": job.reason}
    return {
        "enabled": svc.settings.live_scores,
        "models": report(live_sums, svc.pool.champions()),
        "drift_retrain": drift,
    }


compare_router = APIRouter(prefix="/v1/compare", tags=["models"])


@compare_router.get(
    "/live",
    response_model=CompareLiveResponse,
    summary="Live Diebold-Mariano verdicts of session models against their shadows",
    responses=error_responses(401, 503),
)
async def compare_live(svc: ServicesDep, _: CallerDep) -> dict[str, Any]:
    """With LATENTCAST_SHADOW, a sampled share of new sessions is also run, unanswered, by the other
    mode's champion and (LATENTCAST_SHADOW_CHALLENGERS) the newest registered challenger of each mode:
    its shadows, at most 3. Per pair (the sessions' version, the shadow's) and horizon: the
    last paired differences of mean pinball loss on the forecasts both settled, their mean and the
    Diebold-Mariano test of them (`verdict`: the lower loss at the 5% level, or a tie). Where every
    difference was settled by an observation with a `time`, those settled at the same time are
    averaged before the test (`sessions`: "averaged per time", `tested` the times); otherwise the
    sessions are treated as independent (`sessions`: "independent"; docs/live.md)."""
    paired = await svc.store.paired_losses()
    return {"shadow": svc.settings.shadow, "pairs": pairs_report(paired)}
