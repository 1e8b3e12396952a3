"""Property-based requests generated from the OpenAPI document find no server error.

schemathesis derives valid and invalid bodies, headers and methods from
``/openapi.json`` (starting from the documented examples) and sends them to the
app in-process, with Docker and the agents faked, so the run is fast and the same
every time. The ``/api/v1`` twins run the same handlers and are left out.
Responses must not be 5xx and must match the documented statuses, media types
and envelope schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.python import asgi

from sandbox.server import create_app
from tests.unit.fakes import FakeAgents, FakeRuntime

from .conftest import make_settings

_runtime = FakeRuntime()
_runtime.images.add("sandbox/rag:latest")
app = create_app(make_settings(), runtime=_runtime, agents=FakeAgents(_runtime))
# schemathesis runs the app's lifespan in its own event loop thread until told to stop.
schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path_regex="^/api/v1/")
# Both modes: valid bodies and invalid ones.
schema.config.generation.update(modes=list(GenerationMode), deterministic=True)


@pytest.fixture(scope="module", autouse=True)
def _stop_the_app() -> Iterator[None]:
    yield
    asgi.shutdown_lifespans()


@schema.parametrize()
@settings(
    max_examples=30,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_makes_a_server_error(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ]
    )
