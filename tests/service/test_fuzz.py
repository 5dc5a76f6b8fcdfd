"""Schema fuzzing: schemathesis sends requests drawn from the service's own OpenAPI schema.

Every operation gets a bounded number of schema-valid requests (positive) and
schema-violating ones (negative), in process against ``create_app`` with API
keys configured and tiny registered champions. Every answer must match the
schema (status documented, body of the documented shape) and none may be a
5xx; a schema-violating request must be refused; ``ignored_auth`` replays
requests without the key and with a wrong one and expects 401.

One built-in check does not apply and is replaced by a stricter one:
``positive_data_acceptance`` wants every schema-valid request accepted, but
whether observations are usable depends on the model that reads them (an ar
model needs ``window + 1`` of them, a bar model needs high and low, high must
not be below low), which no static schema can say. So a schema-valid request
may be refused as 422 ``invalid_data`` by the model's rules, never as 422
``invalid_request`` (that would mean the schema and the request validation
disagree).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from service.config import Settings
from service.http.app import create_app
from service.http.auth import API_KEY_HEADER
from training.lock import JobLock
from training.registry import Registry
from training.retrain import LOCK_FILE

CLIENT_KEY, ADMIN_KEY = "fuzz-client-key-0123", "fuzz-admin-key-01234"
pytestmark = pytest.mark.slow  # not in `make check`: see the "slow" marker in pyproject.toml

# requests per operation and generation mode: the whole fuzz run stays well under a minute
EXAMPLES = 50
OPERATIONS = (
    "POST /v1/forecast",
    "POST /v1/observations",
    "POST /v1/sessions",
    "POST /v1/sessions/{session_id}/observations",
    "GET /v1/sessions/{session_id}",
    "DELETE /v1/sessions/{session_id}",
    "POST /v1/sessions/{session_id}/migrate",
    "GET /v1/models",
    "GET /v1/models/promotions",
    "GET /v1/models/live",
    "GET /v1/compare/live",
    "GET /v1/models/compare",
    "GET /v1/models/compare/plots",
    "GET /v1/models/compare/plots/{name}",
    "POST /v1/models/reload",
    "GET /v1/data/tickers",
    "GET /v1/data/prices",
    "POST /v1/retrain",
    "GET /v1/jobs",
    "GET /v1/jobs/{job_id}",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
)
# a schema-violating request needs something to violate: these take no body and no parameter
NOTHING_TO_VIOLATE = {
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "GET /v1/models",
    "GET /v1/models/promotions",
    "GET /v1/models/live",
    "GET /v1/compare/live",
    "GET /v1/models/compare",
    "GET /v1/models/compare/plots",
    "POST /v1/models/reload",
    "GET /v1/data/tickers",
    "POST /v1/retrain",
    "GET /v1/jobs",
}
# a bulk request answers a schema-violating item with that item's error, and the request with a 200
PER_ITEM = {"POST /v1/forecast", "POST /v1/observations"}
RUNS = [(label, GenerationMode.POSITIVE) for label in OPERATIONS] + [
    (label, GenerationMode.NEGATIVE) for label in OPERATIONS if label not in NOTHING_TO_VIOLATE
]
HEADERS = {API_KEY_HEADER: ADMIN_KEY}


@pytest.fixture(scope="module")
def artifacts(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shared registry: fuzzing writes job reports next to it."""
    root = tmp_path_factory.mktemp("fuzz") / "artifacts"
    shutil.copytree(registry.root, root)
    return root


@pytest.fixture(scope="module")
def app(artifacts: Path) -> FastAPI:
    settings = Settings(artifacts=artifacts, registry_poll_seconds=0, api_keys=(CLIENT_KEY,), admin_key=ADMIN_KEY)
    return create_app(settings)


@pytest.fixture(scope="module")
def schema(app: FastAPI) -> Any:
    # the schemathesis pytest plugin ends the app's lifespan at the end of every test
    return schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture
def open_session(schema: Any, closes: list[float]) -> Iterator[Any]:
    """Opens a real session (warmed on a few closes) and returns its id, so that session routes are fuzzed
    on sessions that exist and not only on unknown ids."""

    def make() -> str:
        opened = schema["/v1/sessions"]["POST"].Case(body={"history": closes[:5]}, headers=HEADERS).call()
        assert opened.status_code == 201, opened.text
        session_id: str = opened.json()["session_id"]
        return session_id

    yield make


def test_every_operation_is_fuzzed(schema: Any):
    labels = {result.ok().label for result in schema.get_all_operations()}
    assert labels == set(OPERATIONS)


@pytest.mark.parametrize(("label", "mode"), RUNS, ids=[f"{label} {mode.value}" for label, mode in RUNS])
def test_fuzzed_requests_get_documented_answers_and_no_5xx(
    schema: Any, open_session: Any, artifacts: Path, label: str, mode: GenerationMode
):
    if label == "POST /v1/retrain":
        # a held lock makes every start a 409 at once: a started retrain (202) would train in a child
        # process for each example; tests/service/test_retraining.py runs real ones
        with JobLock(artifacts / LOCK_FILE, "fuzz"):
            fuzz_operation(schema, open_session, label, mode)
    else:
        fuzz_operation(schema, open_session, label, mode)


def fuzz_operation(schema: Any, open_session: Any, label: str, mode: GenerationMode) -> None:
    method, path = label.split(" ", 1)
    operation = schema[path][method]
    on_session = "{session_id}" in path and mode is GenerationMode.POSITIVE

    @given(case=operation.as_strategy(generation_mode=mode, headers=HEADERS), real=st.booleans())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    def fuzz(case: Any, real: bool) -> None:
        if on_session and real:
            case.path_parameters = {**case.path_parameters, "session_id": open_session()}
        per_item = mode is GenerationMode.NEGATIVE and label in PER_ITEM
        excluded = [positive_data_acceptance, *([negative_data_rejection] if per_item else [])]
        response = case.call_and_validate(excluded_checks=excluded)
        if per_item and response.status_code == 200:
            statuses = [item["status"] for item in response.json()["items"]]
            assert any(status != 200 for status in statuses), f"no item refused: {response.text}"
        if mode is GenerationMode.POSITIVE and response.status_code == 422:
            code = response.json()["error"]["code"]
            assert code == "invalid_data", f"a schema-valid request was refused as {code}: {response.text}"

    fuzz()
