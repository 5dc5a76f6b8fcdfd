"""``LeanRoute``: a route documented like any other, run without FastAPI's parameter handling.

For the route clients call at every new price. FastAPI resolves a route's
parameters at each request (its dependency solver, even for a path string and
the request), which costs about a sixth of an append. A ``LeanRoute`` is
declared and documented in OpenAPI as usual, but its endpoint is called as
``endpoint(request, **path_params)``: path parameters as the strings in the
URL, no dependencies, and the endpoint reads its body itself
(``service/routes/bodies.py``) and returns a ``Response``. Errors raised in it
reach the app's error handlers as from any route.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class LeanRoute(APIRoute):
    """An ``APIRoute`` whose endpoint takes the request and the path parameters, nothing else."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        names = list(inspect.signature(endpoint).parameters)
        if names[:1] != ["request"]:
            raise TypeError(f"{endpoint.__name__}: a lean endpoint takes the request first")
        super().__init__(path, endpoint, **kwargs)
        if unexpected := set(names[1:]) - set(self.param_convertors):
            raise TypeError(
                f"{endpoint.__name__}: a lean endpoint's other parameters are path parameters, not {unexpected}"
            )

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def handle(request: Request) -> Response:
            response: Response = await endpoint(request, **request.path_params)
            return response

        return handle
