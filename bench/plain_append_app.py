"""The service with its append route as a plain FastAPI route: the twin of its ``LeanRoute`` in the benches.

The same app as ``latentcast serve`` but for one route: the append is an
ordinary ``APIRoute`` whose body and dependencies FastAPI resolves, rather than
a ``LeanRoute`` that reads them itself. It still returns the reply's JSON as
made in the session's step, so the two differ only in how the request reaches
the endpoint. ``bench/http.py --plain-append`` serves it by uvicorn as a
factory; ``bench/fast_paths.py`` puts its route in place of the lean one:

    uvicorn --factory bench.plain_append_app:create_app
"""

from __future__ import annotations

from fastapi import FastAPI, Response
from fastapi.routing import APIRoute

from service.http.app import create_app as create_service_app
from service.http.dependencies import CallerDep, ServicesDep
from service.http.schemas.requests import AppendRequest, observations

APPEND_PATH = "/v1/sessions/{session_id}/observations"


async def append(session_id: str, body: AppendRequest, svc: ServicesDep, who: CallerDep) -> Response:
    reply = await svc.sessions.append(who.owner, session_id, body.seq, observations(body.observations))
    return Response(reply.to_json(), media_type="application/json")


def create_app() -> FastAPI:
    """The service's app (settings from the environment) with the plain append route in place of the lean one."""
    app = create_service_app()
    routes = app.router.routes
    [index] = [i for i, r in enumerate(routes) if isinstance(r, APIRoute) and r.path == APPEND_PATH]
    routes[index] = APIRoute(APPEND_PATH, append, methods=["POST"], response_model=None)
    return app
