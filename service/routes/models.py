"""The models: versions and champions, the latest comparison report, reload (admin)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter

from data.errors import NotFoundError, UnavailableError
from service.dependencies import AdminDep, CallerDep, ServicesDep
from service.forecasting import in_thread
from service.routes import error_responses
from service.schemas import ModelsResponse, ReloadResponse

router = APIRouter(prefix="/v1/models", tags=["models"])

COMPARE_REPORT = ("reports", "compare", "report.json")
BACKTEST_REPORT = ("reports", "backtest", "backtest.json")


@router.get(
    "", response_model=ModelsResponse, summary="Versions, champions and their metrics", responses=error_responses(401)
)
async def list_models(svc: ServicesDep, _: CallerDep) -> dict[str, Any]:
    """Every registered version with its metrics and data span; `champions` are the versions
    this process serves to new sessions."""
    versions = await in_thread(svc.pool.registry.versions)
    champions = svc.pool.champions()
    loaded = svc.pool.loaded()
    return {
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
            for v in versions
        ],
    }


@router.get(
    "/compare",
    summary="The latest ar vs latent comparison and walk-forward backtest",
    responses={200: {"description": "the comparison report, as written"}, **error_responses(401, 404, 503)},
)
async def compare(svc: ServicesDep, _: CallerDep) -> dict[str, Any]:
    """The report written by the last comparison run (`ARTIFACTS/reports/compare/report.json`), with the
    last walk-forward backtest (`latentcast backtest`) under `backtest`, null until one has run."""
    compare_path = svc.settings.artifacts.joinpath(*COMPARE_REPORT)
    backtest_path = svc.settings.artifacts.joinpath(*BACKTEST_REPORT)
    report = await in_thread(_read_report, compare_path)
    backtest = await in_thread(_read_report, backtest_path)
    if report is None and backtest is None:
        raise NotFoundError(
            f"no comparison report yet: neither {compare_path} nor {backtest_path} exists "
            "(run `latentcast compare` or `latentcast backtest` first)"
        )
    return {**(report or {}), "backtest": backtest}


def _read_report(path: Path) -> dict[str, Any] | None:
    """A JSON report, or None if it was never written; ``UnavailableError`` if it is unreadable."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        report: dict[str, Any] = json.loads(text)
    except ValueError as exc:
        raise UnavailableError(f"the report {path} is unreadable: {exc}") from exc
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
