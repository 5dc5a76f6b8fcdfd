"""uvicorn's access log without session ids or query strings.

Without API keys a session's id is all it takes to read, feed or delete it,
and it is in the path of every session route: an access log that kept it would
hand sessions to whoever reads the log. ``redact_session_ids`` makes uvicorn's
access log show ``/v1/sessions/<id>/...`` instead. No route reads a query
string, but a client may put a key there (``?api_key=...``): the log shows
``?<redacted>`` whatever it held.
"""

from __future__ import annotations

import logging
import re

ACCESS_LOGGER = "uvicorn.access"
SHOWN_ID = "<id>"
SHOWN_QUERY = "?<redacted>"
# uvicorn logs (client, method, path with its query, HTTP version, status)
_PATH_ARG = 2
_SESSION_PATH = re.compile(r"^(/v1/sessions/)[^/?]+")


class SessionIdFilter(logging.Filter):
    """Replaces the session id and the query string in the path of an access log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) > _PATH_ARG:
            path = args[_PATH_ARG]
            if isinstance(path, str):
                path, query, _ = path.partition("?")
                shown = _SESSION_PATH.sub(rf"\g<1>{SHOWN_ID}", path) + (SHOWN_QUERY if query else "")
                record.args = (*args[:_PATH_ARG], shown, *args[_PATH_ARG + 1 :])
        return True


_FILTER = SessionIdFilter()


def redact_session_ids() -> None:
    """Install the filter on uvicorn's access logger (once, however often it is called)."""
    logging.getLogger(ACCESS_LOGGER).addFilter(_FILTER)
