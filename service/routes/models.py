"""The models: versions and champions, the latest comparison report, reload (admin)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter

from data.errors import NotFoundError, UnavailableError
from service.dependencies import AdminDep, CallerDep, ServicesDep
from service.forecasting import in_thread
from service.routes import error_responses
from service.schemas import ModelsResponse, ReloadResponse

router = APIRouter(prefix="/v1/models", tags=["models"])

COMPARE_REPORT = ("reports", "compare", "report.json")


@router.get(
    "", response_model=ModelsResponse, summary="Versions, champions and their metrics", responses=error_responses(401)
)
async def list_models(svc: ServicesDep, _: CallerDep) -> dict[str, Any]:
    """Every registered version with its metrics and data span; `champions` are the versions
    this process serves to new sessions. A version folder that does not read (its manifest
    missing, say) is listed under `broken` with the reason, and never served."""
    listing = await in_thread(svc.pool.registry.listing)
    champions = svc.pool.champions()
    loaded = svc.pool.loaded()
    return {
        "broken": [{"version": version, "reason": reason} for version, reason in listing.broken.items()],
        "champions": {mode: champions.get(mode) for mode in ("ar", "latent")},
        "versions": [
            {
                "version": v.version,
                "mode": v.mode,
                "created": v.created,
                "champion": champions.get(v.mode) == v.version,
                "loaded": v.version in loaded,
                "metrics": v.metrics,
                "data_span": v.data_span,
                "config": v.config,
            }
            for v in listing.versions
        ],
    }


@router.get(
    "/compare",
    summary="The latest ar vs latent comparison",
    responses={200: {"description": "the comparison report, as written"}, **error_responses(401, 404, 503)},
)
async def compare(svc: ServicesDep, _: CallerDep) -> dict[str, Any]:
    """The report written by the last comparison run (`ARTIFACTS/reports/compare/report.json`)."""
    # the messages name the report as the artifacts folder holds it, never where that folder is
    path = svc.settings.artifacts.joinpath(*COMPARE_REPORT)
    shown = "/".join(COMPARE_REPORT)
    try:
        text = await in_thread(path.read_text)
    except FileNotFoundError as exc:
        raise NotFoundError(f"no comparison report yet: run `latentcast compare` to write {shown}") from exc
    except OSError as exc:
        raise UnavailableError(f"the comparison report {shown} is unreadable ({exc.strerror})") from exc
    try:
        report: dict[str, Any] = json.loads(text)
    except ValueError as exc:
        raise UnavailableError(f"the comparison report {shown} is unreadable: {exc}") from exc
    return report


@router.post(
    "/reload",
    response_model=ReloadResponse,
    summary="Pick up new champions now (admin)",
    responses=error_responses(401, 403),
)
async def reload(svc: ServicesDep, _: AdminDep) -> dict[str, Any]:
    """Read the registry's champions and load the new ones. Open sessions stay on their version.
    A champion that fails to load is reported under `failed` and the previous one keeps serving."""
    result = await in_thread(svc.pool.refresh)
    svc.metrics.refreshed(result)
    return {"champions": result.champions, "changed": result.changed, "failed": result.failed}
