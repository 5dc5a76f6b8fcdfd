"""Sessions: open, append observations by ``seq``, read, migrate, end."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from service.http.dependencies import SECURED, CallerDep, ServicesDep, caller_of, services_of
from service.http.json_reader import check_listed
from service.http.routes import error_responses
from service.http.routes.lean import LeanRoute, body_schema, read_body
from service.http.schemas.requests import CLOSES, AppendRequest, MigrateRequest, OpenSessionRequest, observations
from service.http.schemas.responses import MigrationResponse, SessionInfoResponse, SessionResponse
from service.sessions.owned_records import SESSION_ID_PATTERN

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])

# the pattern is documented, not enforced here: the service answers 404 to any id it does not
# hold, well formed or not, so that an id's shape says nothing about which ids exist
SessionId = Annotated[
    str,
    Path(
        description="as returned when the session was opened",
        json_schema_extra={"pattern": SESSION_ID_PATTERN.pattern},
    ),
]
OPEN_EXAMPLES: dict[str, Any] = {
    "warm": {
        "summary": "latent, warmed on five closes",
        "value": {"mode": "latent", "history": CLOSES, "ticker": "IBM"},
    },
    "empty": {"summary": "an exact version, no history yet", "value": {"version": "ar-20261125T101530-9b0c4e"}},
}
APPEND_EXAMPLES: dict[str, Any] = {
    "one": {"summary": "the next close", "value": {"seq": 5, "observations": [103.4]}},
    "bars": {
        "summary": "two bars",
        "value": {"seq": 5, "observations": [{"close": 103.4, "high": 104.0, "low": 102.9, "volume": 2.9e6}, 104.1]},
    },
}

MIGRATE_EXAMPLES: dict[str, Any] = {
    "champion": {"summary": "to the champion of the session's mode", "value": {}},
    "version": {"summary": "to an exact version", "value": {"version": "latent-20261202T101530-77e0d1"}},
}


@router.post(
    "",
    status_code=201,
    response_model=SessionResponse,
    response_model_exclude_unset=True,  # `needs` only in a reply without a forecast
    summary="Open a session",
    responses=error_responses(401, 404, 413, 415, 422, 429, 503),
    openapi_extra=body_schema(OpenSessionRequest, OPEN_EXAMPLES, required=False),
)
async def open_session(request: Request, svc: ServicesDep, who: CallerDep) -> dict[str, Any]:
    """Open a session on a version, or on the champion of a mode (latent by default), warmed on
    `history` (seq 0..n-1). `forecast` is null while the history is too short. No body: an empty
    session on the latent champion."""
    limits = svc.settings

    def bounds(content: Any) -> None:
        check_listed(content, "history", limits.max_history, "history", "MAX_HISTORY")

    body = OpenSessionRequest()
    if await request.body():
        body = await read_body(request, OpenSessionRequest, limits.inline_body_bytes, bounds)
    history = observations(body.history)
    adaptive = body.calibration == "adaptive"
    reply = await svc.sessions.open(who.owner, history, body.mode, body.version, body.ticker, adaptive)
    return reply.to_dict()


async def append(request: Request, session_id: SessionId) -> Response:
    """Apply the batch whose first observation has index `seq` (the session's `next_seq`).
    A retry of a recent batch (same seq, same content) gets the same reply and is applied once;
    a batch overlapping what was applied, with the same values, has only its new tail applied;
    a gap or a different overlap is a 409 naming `expected_seq`. The batch is validated whole:
    on any error nothing is applied."""
    # the caller first: a caller without a key learns nothing, not even that its body is wrong
    svc, who = services_of(request), caller_of(request)
    limits = svc.settings

    def bounds(content: Any) -> None:
        check_listed(content, "observations", limits.max_batch, "batch", "MAX_BATCH")

    body = await read_body(request, AppendRequest, limits.inline_body_bytes, bounds)
    reply = await svc.sessions.append(who.owner, session_id, body.seq, observations(body.observations))
    # the reply's JSON is made once, when the session's change is planned (and kept for retries);
    # validating it again against the response model would add to every request (docs/performance.md)
    return Response(reply.to_json(), media_type="application/json")


router.add_api_route(
    "/{session_id}/observations",
    append,
    methods=["POST"],
    response_model=SessionResponse,
    summary="Append observations, get the next forecast",
    responses=error_responses(401, 404, 409, 413, 415, 422, 503),
    openapi_extra=SECURED | body_schema(AppendRequest, APPEND_EXAMPLES),
    route_class_override=LeanRoute,  # clients call it at every new price
)


@router.get(
    "/{session_id}",
    response_model=SessionInfoResponse,
    response_model_exclude_unset=True,  # `needs` only in a reply without a forecast
    summary="What a session holds",
    responses=error_responses(401, 404, 503),
)
async def read(session_id: SessionId, svc: ServicesDep, who: CallerDep) -> dict[str, Any]:
    """The session's model, next seq, last forecast, label, times and retained observations."""
    info = await svc.sessions.read(who.owner, session_id)
    return {
        **info.reply.to_dict(),
        "ticker": info.ticker,
        "created": info.created,
        "updated": info.updated,
        "retained": info.retained,
        "adaptive_offsets": info.offsets,
    }


@router.delete("/{session_id}", status_code=204, summary="End a session", responses=error_responses(401, 404, 503))
async def delete(session_id: SessionId, svc: ServicesDep, who: CallerDep) -> Response:
    await svc.sessions.delete(who.owner, session_id)
    return Response(status_code=204)


@router.post(
    "/{session_id}/migrate",
    response_model=MigrationResponse,
    response_model_exclude_unset=True,  # `needs` only in a reply without a forecast
    summary="Move a session to another model version",
    responses=error_responses(401, 404, 415, 422, 503),
    openapi_extra=body_schema(MigrateRequest, MIGRATE_EXAMPLES, required=False),
)
async def migrate(request: Request, session_id: SessionId, svc: ServicesDep, who: CallerDep) -> dict[str, Any]:
    """Replay the observations the session retains through `version`, or through the champion
    of `mode` (default: the session's own mode). `next_seq` is unchanged; if the session had seen
    more than it retains, the new model is warmed from `first_replayed_seq` only."""
    choice = MigrateRequest()
    if await request.body():
        choice = await read_body(request, MigrateRequest, svc.settings.inline_body_bytes)
    done = await svc.sessions.migrate(who.owner, session_id, choice.mode, choice.version)
    return {
        **done.reply.to_dict(),
        "previous_model": done.previous.to_dict(),
        "replayed": done.replayed,
        "first_replayed_seq": done.first_replayed_seq,
    }
