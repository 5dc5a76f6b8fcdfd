"""A JSON body read and validated by the route itself, with FastAPI's answers.

The session append route runs at every new price a client sends. As a FastAPI
body parameter, its body would be parsed before the route's dependencies ran,
and FastAPI's generic path for the body and the dependencies cost a quarter of
the request. ``read_body`` reads it once the caller is known (a caller without
a key learns nothing of its body, not even that it is not JSON), and refuses
it as FastAPI would: the same error entries (``loc`` starting with ``"body"``),
so the same 422 answers (``service/errors.py``). ``body_schema`` documents it
in OpenAPI as a body parameter would be.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from service.errors import UNDECODABLE
from service.middleware import is_json_type

M = TypeVar("M", bound=BaseModel)


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
