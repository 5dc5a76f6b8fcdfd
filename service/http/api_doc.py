"""docs/api.md's route table, written from the app's OpenAPI schema.

    .venv/bin/python -m service.http.api_doc           # rewrite the table in docs/api.md
    .venv/bin/python -m service.http.api_doc --check   # exit 1 if it is stale

The table sits between two marker lines of docs/api.md; the rest of the page is
written by hand. One row per operation of the schema (method, path, summary and
the statuses it documents), then the routes the schema leaves out (the
WebSocket feed, the page), from ``OUTSIDE_SCHEMA``.
``tests/service/test_api_doc.py`` fails when the committed table differs from
what this writes, so the table cannot drift from the routes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute

from service.config import Settings
from service.http.app import create_app
from service.settings_doc import write_or_check

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
COMMAND = ".venv/bin/python -m service.http.api_doc"
BEGIN = f"<!-- the route table: written by `{COMMAND}` from the OpenAPI schema; a test fails when it is stale -->"
END = "<!-- end of the route table -->"
METHODS = ("get", "post", "put", "patch", "delete")
# the routes that OpenAPI cannot describe (a WebSocket) or that are not part of the API (the page, the docs)
OUTSIDE_SCHEMA = {
    "WS /v1/stream": "A feed: appends in, each message's replies pushed back, the session rules on each item "
    "([streaming.md](streaming.md))",
    "GET /": "The page: the champions, the last comparison, a live ar vs latent replay ([page.md](page.md))",
    "GET /docs": "This reference as Swagger UI, served from the package (no network needed)",
    "GET /redoc": "This reference as ReDoc, served from the package (no network needed)",
}


def render(app: FastAPI) -> str:
    """The table, markers included: one row per operation of ``app``'s schema, then ``OUTSIDE_SCHEMA``."""
    rows = ["| method, path | does | statuses |", "| --- | --- | --- |"]
    for path, operations in app.openapi()["paths"].items():
        for method in METHODS:
            if method in operations:
                rows.append(_row(f"{method.upper()} {path}", operations[method]))
    rows += [f"| `{route}` | {does} | |" for route, does in OUTSIDE_SCHEMA.items()]
    return "\n".join([BEGIN, *rows, END])


def routes_outside_schema(app: FastAPI) -> list[str]:
    """The API routes (``APIRoute``, ``APIWebSocketRoute``) that ``app``'s schema leaves out, as
    ``OUTSIDE_SCHEMA`` names them."""
    found = []
    for route in app.routes:
        if isinstance(route, APIWebSocketRoute):
            found.append(f"WS {route.path}")
        elif isinstance(route, APIRoute) and not route.include_in_schema:
            found += [f"{method} {route.path}" for method in sorted(route.methods or ())]
    return found


def _row(route: str, operation: dict[str, Any]) -> str:
    codes = sorted(operation.get("responses", {}))
    ok = [c for c in codes if c.startswith("2")]
    errors = [c for c in codes if not c.startswith("2")]
    statuses = ", ".join(ok) + (f"; errors {', '.join(errors)}" if errors else "")
    return f"| `{route}` | {operation.get('summary', '')} | {statuses} |"


def with_table(page: str, table: str) -> str:
    """``page`` with the text between the markers (included) replaced by ``table``; ``ValueError`` without them."""
    start, end = page.find(BEGIN), page.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{DOC} has no route table markers: {BEGIN!r} ... {END!r}")
    return page[:start] + table + page[end + len(END) :]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write docs/api.md's route table from the OpenAPI schema.")
    parser.add_argument("--check", action="store_true", help="only check that the table is up to date")
    args = parser.parse_args(argv)
    text = with_table(DOC.read_text(), render(create_app(Settings())))
    return write_or_check(DOC, text, args.check, f"{DOC}'s route table is stale: run {COMMAND}")


if __name__ == "__main__":
    sys.exit(main())
