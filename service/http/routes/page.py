"""``GET /``: a page to watch the ar and latent champions forecast side by side (``docs/page.md``).

The page is static files in the package (``service/static``), no build step and
nothing fetched from elsewhere: its data comes from the public ``/v1`` routes,
called by the page's own script with the user's API key.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(str(resources.files("service").joinpath("static")))

router = APIRouter(tags=["page"])


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(
        STATIC / "index.html",
        # the security headers are every HTML response's (service/http/middleware.py), /static/index.html's too
        headers={"Cache-Control": "no-cache"},
    )


router.mount("/static", StaticFiles(directory=STATIC), name="static")
