"""The OpenAPI document and the API's conformance to it.

The fuzzing pass loads /api/schema/ from the WSGI app itself, so every endpoint documented later is fuzzed
too, as two members of two brands and a company admin of another company, with a fixed, derandomized example
budget (most of it with lone surrogates or integers past bigint): no 5xx, and every status code,
content type and body as documented.
"""

import collections
import re
from collections import Counter

import pytest
import schemathesis
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.urls import Resolver404, resolve
from drf_spectacular.drainage import GENERATOR_STATS
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ai_core.tests.factories import AIJobFactory
from business.services import api_key_create
from conftest import make_client

EXAMPLES_PER_OPERATION = 8  # in all, alternating between the two users
GATEWAY_EXAMPLES = 12  # each /v1/ call is a whole job: fewer of them

# Fuzzing only (the coverage phase enumerates every boundary case of every parameter: minutes, not seconds).
CONFIG = schemathesis.Config.from_dict(
    {
        "phases": {"coverage": {"enabled": False}},
        "generation": {"max-examples": EXAMPLES_PER_OPERATION, "deterministic": True},
    }
)
# The SSE streams stay open for minutes: their behaviour is tested in ai_core/tests/api/test_events.py.
document = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application(), config=CONFIG).exclude(
    path_regex=r"/events/$"
)
# /v1/ apart (the two share their hooks): a gateway call runs its job in the request, and the engine closes the
# connection around the provider call, which a test's transaction would not survive.
schema = document.exclude(path_regex=r"^/v1/")
gateway_schema = document.include(path_regex=r"^/v1/")


def _document(client) -> dict:
    return client.get("/api/schema/", HTTP_ACCEPT="application/json").json()


def _operations(document: dict):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def test_the_document_generates_without_a_warning_and_validates(tmp_path):
    GENERATOR_STATS.reset()  # other modules generated it at collection: count this run only

    # --fail-on-warn raises on any warning (an unresolvable field, two components of one name, ...).
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(tmp_path / "schema.yaml"))

    assert not GENERATOR_STATS
    assert (tmp_path / "schema.yaml").read_text().startswith("openapi: 3")


def test_every_operation_has_a_summary_and_a_description_of_its_own(client):
    operations = list(_operations(_document(client)))

    for method, path, operation in operations:
        assert operation.get("summary", "").strip(), (method, path)
        assert len(operation.get("description", "")) >= 40, (method, path)
    summaries = Counter(operation["summary"] for _, _, operation in operations)
    descriptions = Counter(operation["description"] for _, _, operation in operations)
    assert [s for s, n in summaries.items() if n > 1] == []
    assert [d[:60] for d, n in descriptions.items() if n > 1] == []


def test_each_resource_is_documented_once(client):
    paths = set(_document(client)["paths"])

    assert "/ai/providers/quotas/" in paths
    assert not [path for path in paths if path.startswith("/ai/usage/quotas/")]  # an alias, kept working


def test_the_undocumented_quota_alias_still_answers(client_for, personas):
    response = client_for(personas.alice, personas.brand_a).get("/ai/usage/quotas/")

    assert response.status_code == 200


def test_the_event_streams_are_documented_as_sse(client):
    paths = _document(client)["paths"]

    for path in ("/ai/jobs/{id}/events/", "/ai/jobs/events/"):
        operation = paths[path]["get"]
        assert list(operation["responses"]["200"]["content"]) == ["text/event-stream"], path
        assert {"Last-Event-ID", "X-Brand-ID"} <= {p["name"] for p in operation["parameters"]}, path
        assert "event: status" in operation["description"]
    assert "404" in paths["/ai/jobs/{id}/events/"]["get"]["responses"]


def test_the_priority_ordering_is_explained(client):
    ordering = next(p for p in _document(client)["paths"]["/ai/jobs/"]["get"]["parameters"] if p["name"] == "ordering")

    assert "urgent > high > normal > low" in ordering["description"]


# Values schemathesis never draws on its own (its strings are always valid UTF-8, its integers stay small):
# lone surrogates, valid JSON that is no text, and integers past the bigint columns. Both were 500s.
LONE_SURROGATES = ("\ud800", "\udbff", "\udc00", "\udfff")
BEYOND_BIGINT = (2**63, -(2**63) - 1, 10**30)


def _made_hostile(value, *, text: bool, integers: bool, draw):
    """A copy of a JSON value with a lone surrogate added to each string and key by a coin toss (`text`:
    not all of them, or an enum field would refuse every case), and every integer past bigint (`integers`)."""
    if isinstance(value, dict):
        return {
            _made_hostile(key, text=text, integers=False, draw=draw): _made_hostile(
                child, text=text, integers=integers, draw=draw
            )
            for key, child in value.items()
        }
    if isinstance(value, list):
        return [_made_hostile(child, text=text, integers=integers, draw=draw) for child in value]
    if isinstance(value, str) and text and draw(st.booleans()):
        return value + draw(st.sampled_from(LONE_SURROGATES))
    if isinstance(value, int) and not isinstance(value, bool) and integers:
        return draw(st.sampled_from(BEYOND_BIGINT))
    return value


@st.composite
def _hostile(draw, value, *, text: bool = True):
    """A third of the time the value as generated, else a copy with lone surrogates in its text or with all
    its integers past bigint, so that whichever field reaches the database or the response likely carries
    one. Without `text`, integers only (a query or path is text on the wire: no lone surrogate there)."""
    mode = draw(st.sampled_from(["as generated", "integers", "text"] if text else ["as generated", "integers"]))
    if mode == "as generated":
        return value
    return _made_hostile(value, text=mode == "text", integers=mode == "integers", draw=draw)


@schema.hook("flatmap_body")
def _hostile_body(context, body):
    return _hostile(body)


# Models of each provider (OpenAI's and Anthropic's go to the fake LLM server: tests point both at it).
CATALOGUE_MODELS = ("echo-1", "echo-embed-1", "gpt-4o-mini", "text-embedding-3-small", "claude-sonnet-4-5")


@schema.hook("flatmap_body")
def _a_catalogue_model(context, body):
    """Half of the /v1/ bodies name a model of the catalogue and give their messages a role (a drawn name is a
    404, a drawn role a 400: the call would never run), keeping whatever else was drawn."""
    if not context.operation.path.startswith("/v1/") or not isinstance(body, dict):
        return st.just(body)

    def runnable(model: str, role: str) -> dict:
        if context.operation.path != "/v1/chat/completions":
            return {**body, "model": model}
        messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        messages = [{**m, "role": role} for m in messages if isinstance(m, dict)] or [{"role": role, "content": "hi"}]
        return {**body, "model": model, "messages": messages}

    roles = st.sampled_from(["user", "system", "assistant"])
    return st.one_of(st.just(body), st.builds(runnable, st.sampled_from(CATALOGUE_MODELS), roles))


@schema.hook("flatmap_query")
def _hostile_query(context, query):
    return _hostile(query, text=False) if query else st.just(query)


@schema.hook("flatmap_path_parameters")
def _hostile_path(context, path_parameters):
    return _hostile(path_parameters, text=False) if path_parameters else st.just(path_parameters)


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


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_the_docs_pages_load_their_assets_from_this_server(client, url):
    page = client.get(url).content.decode()

    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert any("drf_spectacular_sidecar" in source for source in sources), sources
    assert [s for s in sources if s.startswith(("http:", "https:", "//"))] == []


def test_the_swagger_ui_script_is_served(client):
    page = client.get("/api/docs/").content.decode()
    script = re.search(r'<script src="(/api/docs/\?script=[^"]*)"', page).group(1)

    response = client.get(script.replace("&amp;", "&"))

    assert response.status_code == 200
    assert b"SwaggerUIBundle" in response.content


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
    # Counted per operation, so an operation's cases get the same credentials however many run before it.
    turns = collections.Counter()

    def headers_for(case) -> dict:
        operation = case.operation.label
        turns[operation] += 1
        if case.operation.path.startswith("/ai/providers/credentials/"):
            # An admin's credential writes resolve and call the base URL the fuzzer wrote: traffic off loopback.
            return (alice, bob)[turns[operation] % 2]
        return (alice, carol, bob, carol)[turns[operation] % 4]

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


@pytest.fixture
def gateway_keys(personas, llm_env):
    """A key with the `gateway` scope of each of two brands, and one without it, taken in turn."""
    keys = [
        api_key_create(brand=brand, user=user, name="fuzz", scopes=scopes)[1]
        for brand, user, scopes in (
            (personas.brand_a, personas.adam, ["gateway"]),
            (personas.brand_b, personas.bob, ["gateway", "jobs:read"]),
            (personas.brand_a, personas.adam, ["jobs:read"]),
        )
    ]
    turns = collections.Counter()

    def headers_for(case) -> dict:
        turns[case.operation.label] += 1
        turn = turns[case.operation.label]
        if turn % 3 and case.headers:
            case.headers.pop("X-Brand-ID", None)  # a drawn brand id is another brand's (403): not every time
        # Mostly the gateway keys: the key without the scope only ever sees a 403.
        return {"Authorization": f"Bearer {keys[(0, 1, 0, 1, 2)[turn % 5]]}"}

    return headers_for


@pytest.mark.django_db(transaction=True)
@gateway_schema.parametrize()
@settings(
    max_examples=GATEWAY_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_gateway_answers_as_documented_and_never_with_a_5xx(case, gateway_keys):
    if isinstance(case.body, dict) and case.body.get("stream"):
        # A stream is an async generator, served by ASGI only: tested in gateway/tests/test_views.py.
        case.body["stream"] = False
    response = case.call(headers=gateway_keys(case))
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
