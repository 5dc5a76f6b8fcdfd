"""The one place where errors become HTTP responses.

Every error answer has one shape, ``{"error": {"code", "message", ...details}}``:

    ForecastError      400  (any other)         ConflictError     409  (with expected_seq)
    DataError          422  (names the seq)     AuthError         401
    ConfigError        400                      ForbiddenError    403
    StateError         500                      LimitError        413
    CheckpointError    503                      QuotaError        429
    NotFoundError      404                      UnavailableError  503
                                                UnsupportedTypeError  415

A quota is 429, not 413: 413 tells a client to send a smaller request, which
cannot help; 429 tells it to back off, and the same request succeeds once it
has freed what it holds.

The items of a bulk request and the messages of the WebSocket feed carry the
same ``{"code", "message", ...}`` with the status the item would get alone
(``error_body``, ``validation_body``); the WebSocket's frames are made in
``service/http/routes/stream.py``.

FastAPI's request validation errors, and a body that is not UTF-8 JSON, are
422 ``invalid_request`` naming the field; routing errors keep their status
(404, 405); anything unexpected is a 500 ``internal`` whose details stay in the
server log.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from latentcast.errors import (
    AuthError,
    CheckpointError,
    ConfigError,
    ConflictError,
    DataError,
    ForbiddenError,
    ForecastError,
    LimitError,
    NotFoundError,
    QuotaError,
    StateError,
    UnavailableError,
    UnsupportedTypeError,
)

log = logging.getLogger(__name__)

STATUS: dict[type[ForecastError], int] = {
    DataError: 422,
    ConfigError: 400,
    StateError: 500,
    CheckpointError: 503,
    NotFoundError: 404,
    ConflictError: 409,
    AuthError: 401,
    ForbiddenError: 403,
    LimitError: 413,
    QuotaError: 429,
    UnavailableError: 503,
    UnsupportedTypeError: 415,
}
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "limit_exceeded"}
# a batch of a thousand bad items would otherwise give a thousand entries
MAX_LISTED_ERRORS = 10
UNDECODABLE = "JSON text must be UTF-8"
INTERNAL = "internal error; the server log has the details"


def status_of(exc: ForecastError) -> int:
    """The HTTP status of a domain error (its nearest mapped class)."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def error_response(status: int, code: str, message: str, **details: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **details}}, status_code=status)


def error_body(code: str, message: str) -> bytes:
    """The error body as bytes, for answers written below the app (``service/http/connections.py``)."""
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def forecast_error_response(exc: ForecastError) -> JSONResponse:
    status, body = item_error(exc)
    return JSONResponse({"error": body}, status_code=status)


def item_error(exc: Exception) -> tuple[int, dict[str, Any]]:
    """The status and the ``{"code", "message", ...}`` of an error: what an HTTP error answers, and what
    one item of a bulk request or a WebSocket message carries. Anything but a ``ForecastError`` is a 500
    ``internal`` whose details stay in the server log."""
    if not isinstance(exc, ForecastError):
        log.error("unexpected error in an item", exc_info=exc)
        return 500, {"code": "internal", "message": INTERNAL}
    status = status_of(exc)
    if status >= 500:
        log.error("%s: %s", exc.code, exc.message)
    return status, {"code": exc.code, "message": exc.message, **exc.details}


def validation_body(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The 422 ``invalid_request`` body of pydantic's or FastAPI's validation ``errors``."""
    listed = [{"field": error_field(e), "message": validation_message(e)} for e in errors]
    first = listed[0] if listed else {"field": "body", "message": "invalid request"}
    more = f" (and {len(listed) - 1} more)" if len(listed) > 1 else ""
    message = f"{first['field']}: {first['message']}{more}"
    return {"code": "invalid_request", "message": message, "errors": listed[:MAX_LISTED_ERRORS]}


def field_name(loc: tuple[int | str, ...]) -> str:
    """``("body", "observations", 3, "close")`` -> ``observations[3].close``."""
    name = ""
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc:
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    return name or "body"


def error_field(error: dict[str, Any]) -> str:
    # a JSON syntax error's location is a character offset, not a field
    return "body" if error.get("type") == "json_invalid" else field_name(tuple(error["loc"]))


def validation_message(error: dict[str, Any]) -> str:
    text = str(error.get("msg", "invalid"))
    return text.removeprefix("Value error, ")


def install_error_handlers(app: FastAPI) -> None:
    """Map every error the app can raise to the one error shape."""

    async def on_forecast_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ForecastError)
        return forecast_error_response(exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"error": validation_body(list(exc.errors()))}, status_code=422)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            # FastAPI answers 400 to a JSON body that is not UTF-8, 422 to one that is not JSON:
            # both are a malformed body, so both get the one answer the routes document
            errors = [{"field": "body", "message": UNDECODABLE}]
            return error_response(422, "invalid_request", f"body: {UNDECODABLE}", errors=errors)
        code = HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal", INTERNAL)

    app.add_exception_handler(ForecastError, on_forecast_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
