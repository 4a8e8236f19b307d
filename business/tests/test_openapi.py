"""The OpenAPI document and the API's conformance to it.

The fuzzing pass loads /api/schema/ from the WSGI app itself, so every endpoint documented later is fuzzed
too, as two users of two brands, with a fixed, derandomized example budget: no 5xx, and every status code,
content type and body as documented.
"""

import itertools
import re

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.urls import Resolver404, resolve
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ai_core.tests.factories import AIJobFactory
from conftest import make_client

EXAMPLES_PER_OPERATION = 8  # in all, alternating between the two users

# Fuzzing only (the coverage phase enumerates every boundary case of every parameter: minutes, not seconds).
CONFIG = schemathesis.Config.from_dict(
    {
        "phases": {"coverage": {"enabled": False}},
        "generation": {"max-examples": EXAMPLES_PER_OPERATION, "deterministic": True},
    }
)
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application(), config=CONFIG)

# Values schemathesis never draws on its own (its strings are always valid UTF-8, its integers stay small):
# lone surrogates, valid JSON that is no text, and integers past the bigint columns. Both were 500s.
LONE_SURROGATES = ("\ud800", "\udbff", "\udc00", "\udfff")
BEYOND_BIGINT = (2**63, -(2**63) - 1, 10**30)


def _spots(value, path=()):
    """(path, kind) of every string, key and integer in a JSON value: the places a hostile value can go."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*path, key), "key"
            yield from _spots(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _spots(child, (*path, index))
    elif isinstance(value, str):
        yield path, "string"
    elif isinstance(value, int) and not isinstance(value, bool):
        yield path, "integer"


def _replaced(value, path, kind, hostile):
    """A copy of `value` with the string, key or integer at `path` made hostile."""
    if len(path) == 1 and kind == "key":
        return {(k + hostile if k == path[0] else k): v for k, v in value.items()}
    if not path:
        return value + hostile if kind == "string" else hostile
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], kind, hostile)
    return copy


@st.composite
def _one_hostile_value(draw, value, *, text: bool = True):
    """The generated value, or (half the time) a copy with one lone surrogate or one bigint-overflowing
    integer in it: one spot, so the rest of the request stays as generated and reaches the code behind.
    Without `text`, integers only (a query or path is text on the wire, where a lone surrogate cannot go)."""
    spots = [(path, kind) for path, kind in _spots(value) if text or kind == "integer"]
    if not spots or not draw(st.booleans()):
        return value
    integer = draw(st.sampled_from(sorted({kind == "integer" for _, kind in spots})))
    path, kind = draw(st.sampled_from([(p, k) for p, k in spots if (k == "integer") == integer]))
    hostile = draw(st.sampled_from(BEYOND_BIGINT if integer else LONE_SURROGATES))
    return _replaced(value, path, kind, hostile)


@schema.hook("flatmap_body")
def _hostile_body(context, body):
    return _one_hostile_value(body)


@schema.hook("flatmap_query")
def _hostile_query(context, query):
    return _one_hostile_value(query, text=False) if query else st.just(query)


@schema.hook("flatmap_path_parameters")
def _hostile_path(context, path_parameters):
    return _one_hostile_value(path_parameters, text=False) if path_parameters else st.just(path_parameters)


def test_the_openapi_document_is_served(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/auth/login/", "/ai/jobs/", "/ai/jobs/{id}/cancel/", "/ai/jobs/dashboard/"} <= set(paths)
    for path, operations in paths.items():
        for method, operation in operations.items():
            if path.startswith("/ai/"):
                assert {"401", "403"} <= set(operation["responses"]), (method, path)
                names = {p["name"] for p in operation.get("parameters", [])}
                assert "X-Brand-ID" in names, (method, path)


def test_the_swagger_ui_is_served(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


def test_error_responses_are_documented_in_the_error_shape(client):
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()["paths"]

    cancel = paths["/ai/jobs/{id}/cancel/"]["post"]["responses"]["409"]
    assert cancel["content"]["application/json"]["schema"]["$ref"].endswith("/Error")


@pytest.fixture
def wsgi_in_test_transaction():
    """Like Django's test client: the WSGI handler must not close the connection holding the test's
    transaction at the end of each request."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def fuzz_headers(personas, wsgi_in_test_transaction):
    """Credentials for each case, in turn: two members of two brands of one company and a company admin of
    another (so admin-only writes such as quotas are fuzzed past their permission check). Each brand has jobs
    in several states, so the small ids the fuzzer tries hit real jobs of one brand and 404s of the others."""
    headers = []
    for user, brand in (
        (personas.alice, personas.brand_a),
        (personas.bob, personas.brand_b),
        (personas.carol, personas.brand_z),
    ):
        for status in ("pending", "running", "completed", "cancelled"):
            AIJobFactory(brand=brand, created_by=user, status=status)
        token = make_client(user)._credentials["HTTP_AUTHORIZATION"]
        headers.append({"Authorization": token, "X-Brand-ID": str(brand.id)})
    alice, bob, carol = headers
    # The admin takes every other case: admin-only bodies (quotas) are the ones that reach the database.
    everyone, members = itertools.cycle([alice, carol, bob, carol]), itertools.cycle([alice, bob])

    def headers_for(case) -> dict:
        # An admin's credential writes resolve and call the base URL the fuzzer wrote: traffic off loopback.
        return next(members) if case.operation.path.startswith("/ai/providers/credentials/") else next(everyone)

    return headers_for


def _routes_to_its_operation(case) -> bool:
    try:
        match = resolve(case.formatted_path)
    except Resolver404:
        return True  # an unknown URL must be a documented 404: check it
    route = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", "/" + match.route).replace("^", "").replace("$", "")
    route = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
    return re.sub(r"\{\w+\}", "{}", route) == re.sub(r"\{\w+\}", "{}", case.operation.path)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_answers_as_documented_and_never_with_a_5xx(case, fuzz_headers):
    if case.headers and "Prefer" in case.headers:
        # A valid "wait=N" would make the call wait N seconds for a worker the test does not run.
        case.headers.pop("Prefer")
    if not _routes_to_its_operation(case):
        return  # e.g. /ai/jobs/{id}/ with id "events" is the SSE stream: another route, tested on its own
    response = case.call(headers=fuzz_headers(case))
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
