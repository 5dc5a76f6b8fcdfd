"""The append route's fast path: a route documented like any other, run without FastAPI's parameter handling.

Clients call ``POST /v1/sessions/{id}/observations`` at every new price, and
FastAPI's generic handling of a route's parameters (its dependency solver, the
body parameter, even for a path string and the request) is a large share of
that request; docs/performance.md ("Fast paths and what each buys") gives the
gain over the same route as a plain FastAPI route and its command. Two
pieces, used together:

- ``LeanRoute``: declared and documented in OpenAPI as usual, but its endpoint
  is called as ``endpoint(request, **path_params)``: path parameters as the
  strings in the URL, no dependencies; it returns a ``Response``. Errors raised
  in it reach the app's error handlers as from any route.
- ``read_body``: the endpoint reads its JSON body itself, once the caller is
  known (a caller without a key learns nothing of its body, not even that it
  is not JSON), with the service's one JSON reader (``service/http/json_reader.py``),
  checks the counts of its lists before validating any entry, and refuses it
  as FastAPI would: the same error entries (``loc`` starting with ``"body"``),
  so the same 422 answers (``service/http/errors.py``). ``body_schema`` and ``document_bodies`` document it
  in OpenAPI as a body parameter would be.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.types import Receive, Scope, Send

from service.http.json_reader import decode
from service.http.middleware import is_json_type

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


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

        # no dependencies, so none of FastAPI's exit stacks around the endpoint (two at every request): an
        # error it raises goes on to the app's ExceptionMiddleware, which answers with the same handlers
        self.app = self._serve

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        response: Response = await self.endpoint(request, **request.path_params)
        await response(scope, receive, send)


async def read_body(
    request: Request, model: type[M], inline_bytes: int, bounds: Callable[[Any], None] = lambda content: None
) -> M:
    """The request's JSON body as ``model``, ``bounds`` checked on it first; ``RequestValidationError`` naming
    what is wrong. Read in a worker thread when it is over ``inline_bytes`` (``decode``)."""

    def checked(content: Any) -> M:
        bounds(content)
        return validated(model, content)

    return await read_content(request, checked, inline_bytes)


async def read_content(request: Request, then: Callable[[Any], T], inline_bytes: int) -> T:
    """``then`` of the request's JSON body, parsed but not validated (bytes if it is not declared JSON)."""
    raw = await request.body()
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    if not is_json_type(request.headers.get("content-type")):
        return then(raw)  # a body that is not declared JSON is validated as bytes: "not an object"
    return await decode(raw, then, inline_bytes)


def validated(model: type[M], content: Any) -> M:
    """``content`` as ``model``; ``RequestValidationError`` as FastAPI raises for a body parameter."""
    try:
        # as FastAPI validates a body parameter (its "not an object" message comes from this)
        return model.model_validate(content, from_attributes=True)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from exc


def body_schema(model: type[BaseModel], examples: dict[str, Any], required: bool = True) -> dict[str, Any]:
    """The ``openapi_extra`` of a route that reads ``model`` with ``read_body``."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    content = {"application/json": {"schema": schema, "examples": examples}}
    return {"requestBody": {"required": required, "content": content}}


def document_bodies(app: FastAPI, *models: type[BaseModel]) -> None:
    """Put ``models`` among the app's OpenAPI components, where ``body_schema`` refers to them."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            components = generate().setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(schema.pop("$defs", {}))
                components[model.__name__] = schema
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
