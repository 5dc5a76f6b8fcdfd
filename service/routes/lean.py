"""The append route's fast path: a route documented like any other, run without FastAPI's parameter handling.

Clients call ``POST /v1/sessions/{id}/observations`` at every new price, and
FastAPI's generic handling of a route's parameters (its dependency solver, the
body parameter, even for a path string and the request) is a large share of
that request: measured against a plain FastAPI route in docs/performance.md.
Two pieces, used together:

- ``LeanRoute``: declared and documented in OpenAPI as usual, but its endpoint
  is called as ``endpoint(request, **path_params)``: path parameters as the
  strings in the URL, no dependencies; it returns a ``Response``. Errors raised
  in it reach the app's error handlers as from any route.
- ``read_body``: the endpoint reads its JSON body itself, once the caller is
  known (a caller without a key learns nothing of its body, not even that it
  is not JSON), and refuses it as FastAPI would: the same error entries
  (``loc`` starting with ``"body"``), so the same 422 answers
  (``service/errors.py``). ``body_schema`` and ``document_bodies`` document it
  in OpenAPI as a body parameter would be.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from service.errors import UNDECODABLE
from service.middleware import is_json_type

M = TypeVar("M", bound=BaseModel)


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


async def read_body(request: Request, model: type[M]) -> M:
    """The request's JSON body as ``model``; ``RequestValidationError`` naming what is wrong."""
    return validated(model, await read_content(request))


async def read_content(request: Request) -> Any:
    """The request's JSON body, parsed but not validated (bytes if it is not declared JSON)."""
    raw = await request.body()
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    content: Any = raw  # a body that is not declared JSON is validated as bytes: "not an object"
    if is_json_type(request.headers.get("content-type")):
        try:
            content = json.loads(raw)
        except json.JSONDecodeError as exc:
            error = {"type": "json_invalid", "loc": ("body", exc.pos), "msg": "JSON decode error", "input": {}}
            raise RequestValidationError([error]) from exc
        except UnicodeDecodeError as exc:
            error = {"type": "json_invalid", "loc": ("body",), "msg": UNDECODABLE, "input": {}}
            raise RequestValidationError([error]) from exc
    return content


def validated(model: type[M], content: Any) -> M:
    """``content`` as ``model``; ``RequestValidationError`` as FastAPI raises for a body parameter."""
    try:
        # as FastAPI validates a body parameter (its "not an object" message comes from this)
        return model.model_validate(content, from_attributes=True)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from exc


def body_schema(model: type[BaseModel], examples: dict[str, Any]) -> dict[str, Any]:
    """The ``openapi_extra`` of a route that reads ``model`` with ``read_body``."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    content = {"application/json": {"schema": schema, "examples": examples}}
    return {"requestBody": {"required": True, "content": content}}


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
