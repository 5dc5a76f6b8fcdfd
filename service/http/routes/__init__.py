"""HTTP routes, one ``APIRouter`` per topic; each route is a thin call into the service's classes."""

from __future__ import annotations

from typing import Any

from service.http.schemas.responses import ErrorResponse


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers a route can give (all in the one error shape)."""
    return {status: {"model": ErrorResponse, "description": DESCRIPTIONS[status]} for status in statuses}


DESCRIPTIONS = {
    401: "missing or unknown API key (when keys are configured)",
    403: "a valid key that is not the admin key",
    404: "no such session (or not yours), version, or no champion for the mode",
    409: "seq gap or conflicting overlap (the error names expected_seq), or a retrain already running",
    413: "request body or observation count over the configured bound",
    415: "a request body that is not sent as JSON (Content-Type application/json)",
    422: "malformed request, or an observation that is missing a field, not finite or not positive",
    429: "this API key already holds as many open sessions as it may (delete one or let one expire)",
    503: "session store unreachable or full of other keys' sessions, or a mode's model not loaded",
}
