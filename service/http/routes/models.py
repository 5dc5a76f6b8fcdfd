"""The models: versions and champions, the latest comparison report, reload (admin)."""

from __future__ import annotations

import json
import pathlib
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from latentcast.errors import NotFoundError, UnavailableError
from models.config import MODES
from service.batching import in_thread
from service.http.dependencies import AdminDep, CallerDep, ServicesDep
from service.http.routes import error_responses
from service.http.schemas.operations import ComparePlotsResponse, ModelsResponse, PromotionsResponse, ReloadResponse
from training.jobs import promotions

router = APIRouter(prefix="/v1/models", tags=["models"])

COMPARE_FOLDER = ("reports", "compare")
COMPARE_REPORT = (*COMPARE_FOLDER, "report.json")
PNG = "image/png"
PLOT_NAME = r"^[A-Za-z0-9_.-]+\.png$"
BACKTEST_REPORT = ("reports", "backtest", "backtest.json")
PROMOTION_JOBS = 200  # the job reports read for the promotion history, newest first


@router.get(
    "", response_model=ModelsResponse, summary="Versions, champions and their metrics", responses=error_responses(401)
)
async def list_models(svc: ServicesDep, _: CallerDep) -> dict[str, Any]:
    """Every registered version with its metrics and data span; `champions` are the versions
    this process serves to new sessions. A version folder that does not read (its manifest
    missing, say) is listed under `broken` with the reason, and never served."""
    registry = svc.pool.registry
    listing = await in_thread(registry.listing)
    promoted = await in_thread(lambda: {v for mode in MODES for v in registry.promotions(mode)})
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
                "promoted": v.version in promoted,
                "metrics": v.metrics,
                "data_span": v.data_span,
                "config": v.config,
            }
            for v in listing.versions
        ],
    }


@router.get(
    "/promotions",
    response_model=PromotionsResponse,
    summary="The champions' promotion history, with each promotion's test",
    responses=error_responses(401),
)
async def list_promotions(svc: ServicesDep, _: CallerDep) -> dict[str, Any]:
    """The promotions of the last retrain jobs whose reports are kept (`LATENTCAST_RETAIN_JOB_DAYS`), newest
    first: the version promoted, the one it replaced, the rule that fired (`better`, `stale`, or `first` for a
    first champion) and the one-sided Diebold-Mariano test's statistic and p-values (docs/retraining.md)."""
    jobs = await in_thread(svc.jobs.jobs.latest, PROMOTION_JOBS)
    return {"promotions": promotions(jobs)}


@router.get(
    "/compare",
    summary="The latest ar vs latent comparison and walk-forward backtest",
    responses={200: {"description": "the comparison report, as written"}, **error_responses(401, 404, 503)},
)
async def compare(svc: ServicesDep, _: CallerDep) -> dict[str, Any]:
    """The report written by the last comparison run (`ARTIFACTS/reports/compare/report.json`), with the
    last walk-forward backtest (`latentcast backtest`) under `backtest`, null until one has run."""
    report = await in_thread(_read_report, svc.settings.artifacts, COMPARE_REPORT)
    backtest = await in_thread(_read_report, svc.settings.artifacts, BACKTEST_REPORT)
    if report is None and backtest is None:
        raise NotFoundError(
            f"no comparison report yet: run `latentcast compare` to write {'/'.join(COMPARE_REPORT)} "
            f"or `latentcast backtest` to write {'/'.join(BACKTEST_REPORT)}"
        )
    return {**(report or {}), "backtest": backtest}


def _read_report(artifacts: pathlib.Path, parts: tuple[str, ...]) -> dict[str, Any] | None:
    """A JSON report under ``artifacts``, or None if it was never written; ``UnavailableError`` if unreadable."""
    # the messages name the report as the artifacts folder holds it, never where that folder is
    shown = "/".join(parts)
    try:
        text = artifacts.joinpath(*parts).read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnavailableError(f"the report {shown} is unreadable ({exc.strerror})") from exc
    try:
        report: dict[str, Any] = json.loads(text)
    except ValueError as exc:
        raise UnavailableError(f"the report {shown} is unreadable: {exc}") from exc
    return report


@router.get(
    "/compare/plots",
    response_model=ComparePlotsResponse,
    summary="The plots of the latest comparison",
    responses=error_responses(401),
)
async def compare_plots(svc: ServicesDep, _: CallerDep) -> dict[str, Any]:
    """The PNG figures the last comparison run wrote beside its report (none before the first run)."""
    return {"plots": await in_thread(_plots, svc.settings.artifacts.joinpath(*COMPARE_FOLDER))}


@router.get(
    "/compare/plots/{name}",
    summary="One plot of the latest comparison (PNG)",
    response_class=Response,
    responses={200: {"content": {PNG: {}}, "description": "the figure"}, **error_responses(401, 404)},
)
async def compare_plot(
    name: Annotated[str, Path(pattern=PLOT_NAME, description="a name listed by GET /v1/models/compare/plots")],
    svc: ServicesDep,
    _: CallerDep,
) -> Response:
    folder = svc.settings.artifacts.joinpath(*COMPARE_FOLDER)
    # only a name listed from the folder is read: never a path a client made up
    if name not in await in_thread(_plots, folder):
        raise NotFoundError(f"no comparison plot {name!r}; GET /v1/models/compare/plots lists them")
    try:
        content = await in_thread((folder / name).read_bytes)
    except FileNotFoundError as exc:  # replaced by a comparison run in between
        raise NotFoundError(f"no comparison plot {name!r}; GET /v1/models/compare/plots lists them") from exc
    return Response(content, media_type=PNG)


def _plots(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.png")) if folder.is_dir() else []


@router.post(
    "/reload",
    response_model=ReloadResponse,
    summary="Pick up new champions now (admin)",
    responses=error_responses(401, 403),
)
async def reload(svc: ServicesDep, _: AdminDep) -> dict[str, Any]:
    """Read the registry's champions and load the new ones. Open sessions stay on their version.
    A champion that fails to load is reported under `failed` and the previous one keeps serving;
    one that failed before is tried again now, whatever its back-off."""
    result = await in_thread(svc.pool.refresh, True)
    svc.metrics.refreshed(result)
    return {"champions": result.champions, "changed": result.changed, "failed": result.failed}
