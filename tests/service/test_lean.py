"""``LeanRoute`` and ``read_body``: documented as FastAPI routes, run without FastAPI's parameter handling."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import APIRouter, FastAPI, Path, Request, Response
from fastapi.testclient import TestClient
from pydantic import BaseModel

from latentcast.errors import ConflictError
from service.http.errors import install_error_handlers
from service.http.routes.lean import LeanRoute, body_schema, document_bodies, read_body


class Item(BaseModel):
    size: int


async def put(request: Request, name: Annotated[str, Path(description="the item's name")]) -> Response:
    item = await read_body(request, Item, inline_bytes=1 << 20)
    if item.size > 10:
        raise ConflictError("too big", expected_seq=10)
    return Response(f"{name}:{item.size}", media_type="text/plain")


@pytest.fixture
def client() -> TestClient:
    router = APIRouter()
    router.add_api_route(
        "/items/{name}",
        put,
        methods=["PUT"],
        summary="Put an item",
        openapi_extra=body_schema(Item, {"one": {"value": {"size": 1}}}),
        route_class_override=LeanRoute,
    )
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router, prefix="/v1")
    document_bodies(app, Item)
    return TestClient(app)


def test_the_endpoint_gets_the_request_and_the_path_parameters(client: TestClient):
    response = client.put("/v1/items/a%20b", json={"size": 3})
    assert (response.status_code, response.text) == (200, "a b:3")


def test_errors_reach_the_app_handlers(client: TestClient):
    conflict = client.put("/v1/items/x", json={"size": 11})
    assert conflict.status_code == 409
    assert conflict.json()["error"] == {"code": "conflict", "message": "too big", "expected_seq": 10}
    invalid = client.put("/v1/items/x", json={"size": "big"})
    assert invalid.status_code == 422
    assert (
        invalid.json()["error"]["message"]
        == "size: Input should be a valid integer, unable to parse string as an integer"
    )


def test_it_is_documented_as_a_route_with_a_path_parameter_and_a_body(client: TestClient):
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/v1/items/{name}"]["put"]
    assert operation["summary"] == "Put an item"
    assert [(p["name"], p["in"], p["description"]) for p in operation["parameters"]] == [
        ("name", "path", "the item's name")
    ]
    body = operation["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/Item"}
    assert schema["components"]["schemas"]["Item"]["properties"]["size"]["type"] == "integer"


def test_an_endpoint_that_would_need_fastapi_to_resolve_its_parameters_is_refused():
    async def with_query(request: Request, name: str, limit: int) -> Response:
        return Response()

    async def without_request(name: str) -> Response:
        return Response()

    for endpoint in (with_query, without_request):
        with pytest.raises(TypeError, match="lean endpoint"):
            LeanRoute("/items/{name}", endpoint, methods=["PUT"])
