"""Retraining from the API (admin): start a job, follow it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from service.batching import in_thread
from service.http.dependencies import AdminDep, ServicesDep
from service.http.routes import error_responses
from service.http.schemas.operations import JobListResponse, JobResponse
from training.jobs import JOB_PATTERN

router = APIRouter(prefix="/v1", tags=["retraining"])

LISTED_JOBS = 20
# documented, not enforced by the schema: any id the store does not hold, well formed or not, is a 404
JobId = Annotated[
    str, Path(description="as returned by POST /v1/retrain", json_schema_extra={"pattern": JOB_PATTERN.pattern})
]


@router.post(
    "/retrain",
    status_code=202,
    response_model=JobResponse,
    summary="Start a retrain (admin)",
    responses=error_responses(401, 403, 409),
)
async def retrain(svc: ServicesDep, _: AdminDep, response: Response) -> dict[str, Any]:
    """Start `latentcast retrain` in its own process, with this service's settings. It trains a
    challenger per mode on fresh prices and promotes it only if it beats the champion on the
    newest holdout; this service picks the new champion up on its next registry poll. 409 if a
    retrain is already running. Follow the job at `Location`."""
    job = (await in_thread(svc.jobs.start)).job
    response.headers["Location"] = f"/v1/jobs/{job.job_id}"
    return job.to_dict()


@router.get(
    "/jobs", response_model=JobListResponse, summary="Recent retrain jobs (admin)", responses=error_responses(401, 403)
)
async def list_jobs(svc: ServicesDep, _: AdminDep) -> dict[str, Any]:
    """The latest retrain jobs, newest first."""
    jobs = await in_thread(svc.jobs.jobs.latest, LISTED_JOBS)
    return {"jobs": [job.to_dict() for job in jobs]}


@router.get(
    "/jobs/{job_id}",
    response_model=JobResponse,
    summary="A retrain job's report (admin)",
    responses=error_responses(401, 403, 404),
)
async def get_job(job_id: JobId, svc: ServicesDep, _: AdminDep) -> dict[str, Any]:
    """Status, stage, data used, and per mode the challenger, the champion, their holdout losses and
    the decision with its reason. A job whose process died reads as `crashed`."""
    job = await in_thread(svc.jobs.jobs.get, job_id)
    return job.to_dict()
