"""``GET /docs`` and ``GET /redoc``: the API's reference, Swagger UI and ReDoc, served from this service alone.

FastAPI's own pages load their scripts from a CDN (blank offline) and start
Swagger UI with an inline script. Here the pages are files in the package
(``service/static/docs.html``, ``redoc.html``), their scripts come from the
``fastapi-offline`` package (Swagger UI's and ReDoc's releases, mounted at
``/docs-assets``) and Swagger UI starts from a file of ours
(``static/swagger-init.js``), so that each page's Content-Security-Policy allows
scripts from this service only. ReDoc styles itself with ``<style>`` elements it
writes at run time and builds its search index in a worker made from a blob:
its page allows those two, nothing more.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from service.http.routes.page import STATIC

ASSETS = Path(str(resources.files("fastapi_offline").joinpath("static")))
COMMON = "default-src 'none'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
SWAGGER_POLICY = f"{COMMON}; script-src 'self'; style-src 'self'; img-src 'self' data:"
REDOC_POLICY = f"{COMMON}; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; worker-src blob:"

router = APIRouter(tags=["docs"])


@router.get("/docs", include_in_schema=False)
async def swagger() -> FileResponse:
    return FileResponse(STATIC / "docs.html", headers={"Content-Security-Policy": SWAGGER_POLICY})


@router.get("/redoc", include_in_schema=False)
async def redoc() -> FileResponse:
    return FileResponse(STATIC / "redoc.html", headers={"Content-Security-Policy": REDOC_POLICY})


router.mount("/docs-assets", StaticFiles(directory=ASSETS), name="docs-assets")
