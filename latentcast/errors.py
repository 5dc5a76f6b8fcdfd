"""The errors latentcast raises on purpose, in one hierarchy.

The hierarchy sits below every layer (``data`` included), so that each raises
and catches the same classes without importing another layer; the service maps
them to HTTP status codes in one place (``service/http/errors.py``). Each class
carries a stable ``code`` that clients can match on; the message is for people.

    ForecastError              base class: anything the project rejects on purpose
    ├── DataError              a price series or observation batch is unusable
    ├── ConfigError            a configuration value is invalid
    ├── StateError             serialised stream state does not fit the model
    ├── CheckpointError        a checkpoint or registry version is missing or corrupt
    ├── NotFoundError          a model, version, session or job does not exist
    ├── ConflictError          a request does not fit what is stored (e.g. a seq gap)
    ├── AuthError              a missing or wrong API key
    ├── ForbiddenError         a valid key without the right to do this
    ├── LimitError             a request exceeds a configured bound
    │   └── QuotaError         a caller holds as many of something as it may (sessions per key)
    ├── UnsupportedTypeError   a request body of a type the API does not read (not JSON)
    └── UnavailableError       a dependency (store, models, lock) cannot serve now
"""

from __future__ import annotations

from typing import Any


class ForecastError(Exception):
    """Base class of every error latentcast raises on purpose.

    ``details`` holds machine-readable context (for example ``expected_seq``)
    that the service adds to its error response.
    """

    code = "forecast_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class DataError(ForecastError, ValueError):
    """A price series or batch of observations is unusable.

    The message names the ticker (or batch), the row and the problem.
    """

    code = "invalid_data"


class ConfigError(ForecastError, ValueError):
    """A configuration value is out of range or unknown."""

    code = "invalid_config"


class StateError(ForecastError, ValueError):
    """Serialised stream state is malformed or belongs to another model."""

    code = "invalid_state"


class CheckpointError(ForecastError):
    """A checkpoint or registry version is missing, incomplete or corrupt."""

    code = "invalid_checkpoint"


class NotFoundError(ForecastError, LookupError):
    """A model, version, session or job does not exist (or is not yours)."""

    code = "not_found"


class ConflictError(ForecastError):
    """The request does not fit the stored state, e.g. a seq gap or overlap."""

    code = "conflict"


class AuthError(ForecastError):
    """No API key, or a key that is not known."""

    code = "unauthorized"


class ForbiddenError(ForecastError):
    """A known key that lacks the right to do this (e.g. admin routes)."""

    code = "forbidden"


class LimitError(ForecastError, ValueError):
    """A request exceeds a configured bound (body size, batch length, ...)."""

    code = "limit_exceeded"


class QuotaError(LimitError):
    """A caller already holds as many of something as it may, e.g. open sessions per API key.

    Unlike its parent, the request itself is fine: the same request succeeds once
    the caller has freed one (a session deleted or expired).
    """

    code = "quota_exceeded"


class UnsupportedTypeError(ForecastError):
    """A request body sent as a type the API does not read: every body is JSON."""

    code = "unsupported_media_type"


class UnavailableError(ForecastError):
    """A dependency cannot serve right now (session store down, no model loaded)."""

    code = "unavailable"
