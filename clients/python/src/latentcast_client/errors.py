"""The errors the service answers, one class per ``code`` of its error body.

The service answers every error as ``{"error": {"code", "message", ...}}``
(an HTTP status beside it), and a bulk item or a feed message the same way.
``api_error`` makes the class of its ``code``; a code this client does not
know (or an answer without a body) is a plain ``ApiError``, so that catching
``ApiError`` catches them all:

    ApiError                 base class: any error the service answers
    ├── InvalidRequestError  invalid_request: a field or a body the API does not take (422)
    ├── InvalidDataError     invalid_data: an unusable price or batch, named (422)
    ├── InvalidConfigError   invalid_config: a value out of range or unknown (400)
    ├── InvalidStateError    invalid_state: stored stream state that does not fit its model (500)
    ├── CheckpointError      invalid_checkpoint: a model version missing or corrupt (503)
    ├── NotFoundError        not_found: no such model, version, session or job, or not yours (404)
    ├── ConflictError        conflict: a batch at another seq than the session's (409)
    ├── AuthError            unauthorized: no API key, or an unknown one (401)
    ├── ForbiddenError       forbidden: a key without the right to do this (403)
    ├── LimitError           limit_exceeded: a request past a bound; send less (413)
    │   └── QuotaError       quota_exceeded: holding as many sessions as a key may (429)
    ├── UnsupportedTypeError unsupported_media_type: a body that is not JSON (415)
    ├── UnavailableError     unavailable: the store or the models are away for a moment (503)
    └── InternalError        internal: a fault of the service, in its log (500)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ApiError(Exception):
    """An error answer: its HTTP status and its body's ``code``, ``message`` and details."""

    def __init__(self, status: int, error: Mapping[str, Any]) -> None:
        super().__init__(f"{status} {error.get('code')}: {error.get('message')}")
        self.status = status
        self.code = str(error.get("code"))
        self.message = str(error.get("message"))
        self.details = {k: v for k, v in error.items() if k not in ("code", "message")}


class InvalidRequestError(ApiError):
    """A field or a body the API does not take; ``details["errors"]`` names each field."""


class InvalidDataError(ApiError):
    """A price series or a batch of observations is unusable; the message names the observation."""


class InvalidConfigError(ApiError):
    """A value out of range or unknown (a mode, a version's name)."""


class InvalidStateError(ApiError):
    """The stored state of a session does not fit its model."""


class CheckpointError(ApiError):
    """A model version is missing, incomplete or corrupt on the service."""


class NotFoundError(ApiError):
    """A model, version, session or job that does not exist, or is not the key's."""


class ConflictError(ApiError):
    """A batch at another seq than the session's: ``reason`` says how, ``expected_seq`` where it stands."""

    @property
    def reason(self) -> str | None:
        reason = self.details.get("reason")
        return None if reason is None else str(reason)

    @property
    def expected_seq(self) -> int | None:
        seq = self.details.get("expected_seq")
        return None if seq is None else int(seq)


class AuthError(ApiError):
    """No API key, or a key the service does not know."""


class ForbiddenError(ApiError):
    """A known key without the right to do this (the admin routes)."""


class LimitError(ApiError):
    """A request past a configured bound (body size, batch length): a smaller one may pass."""


class QuotaError(LimitError):
    """The key holds as many sessions as it may: the same request passes once one is deleted or expired."""


class UnsupportedTypeError(ApiError):
    """A body of a type the API does not read: every body is JSON."""


class UnavailableError(ApiError):
    """The store or the models cannot serve now; the same request may pass a moment later."""


class InternalError(ApiError):
    """A fault of the service; its details are in the service's log."""


CODES: dict[str, type[ApiError]] = {
    "invalid_request": InvalidRequestError,
    "invalid_data": InvalidDataError,
    "invalid_config": InvalidConfigError,
    "invalid_state": InvalidStateError,
    "invalid_checkpoint": CheckpointError,
    "not_found": NotFoundError,
    "conflict": ConflictError,
    "unauthorized": AuthError,
    "forbidden": ForbiddenError,
    "limit_exceeded": LimitError,
    "quota_exceeded": QuotaError,
    "unsupported_media_type": UnsupportedTypeError,
    "unavailable": UnavailableError,
    "internal": InternalError,
}


def api_error(status: int, error: Mapping[str, Any]) -> ApiError:
    """The error of ``code`` in ``error`` (a plain ``ApiError`` for a code not listed)."""
    return CODES.get(str(error.get("code")), ApiError)(status, error)
