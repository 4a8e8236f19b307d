"""Tenant isolation for every /ai/ endpoint, driven by the OpenAPI document so new endpoints are covered.

Personas (conftest): alice (member of A), adam (admin of A), bob (member of B, same company), carol (company
admin of another company). For every operation that takes an id, bob and carol get a 404 on A's object and
A's object is untouched; for every operation that returns rows, nothing of A appears for them, whatever the
filters, search, ordering or scope.
"""

import json
import re
from collections.abc import Callable

import pytest
from django.db import transaction
from drf_spectacular.generators import SchemaGenerator

from ai_core.models import AIJob, JobStatus
from ai_core.tests.factories import AIJobFactory
from ai_usage.tests.factories import QuotaFactory
from batches.models import Batch
from batches.tests.factories import BatchFactory, BatchJobFactory
from business.api.schema import UNDOCUMENTED_ALIASES
from business.services import api_key_create
from conftest import Personas
from webhooks.models import WebhookEndpoint
from webhooks.tests.factories import WebhookEndpointFactory

SECRET = "alpha-secret"


def _operations() -> list[tuple[str, str]]:
    """Every documented /ai/ operation but the event streams (see STREAMS), and the same operations under
    the routes the document leaves out as aliases, which must be just as isolated."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    documented = [
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if path.startswith("/ai/")
        and method in {"get", "post", "put", "patch", "delete"}
        and "text/event-stream" not in operation["responses"].get("200", {}).get("content", {})
    ]
    aliases = [
        (method, alias + path.removeprefix(canonical))
        for alias, canonical in UNDOCUMENTED_ALIASES.items()
        for method, path in documented
        if path.startswith(canonical)
    ]
    return sorted(documented + aliases)


OPERATIONS = _operations()
WITH_ID = [op for op in OPERATIONS if "{" in op[1]]
ROW_READS = [op for op in OPERATIONS if "{" not in op[1] and op[0] == "GET"]


class World:
    """A's jobs in every status (created by alice and adam), B's and Z's own jobs."""

    def __init__(self, personas):
        self.p = personas
        self.a_jobs = [
            AIJobFactory(brand=personas.brand_a, created_by=user, status=status, description=f"{SECRET} {status}")
            for status in JobStatus.values
            for user in (personas.alice, personas.adam)
        ]
        self.b_jobs = [
            AIJobFactory(brand=personas.brand_b, created_by=personas.bob, status=s, description="bravo")
            for s in (JobStatus.PENDING, JobStatus.COMPLETED)
        ]
        self.z_jobs = [AIJobFactory(brand=personas.brand_z, created_by=personas.carol, description="zulu")]
        self.a_webhook = WebhookEndpointFactory(
            brand=personas.brand_a, url="https://93.184.216.34/a", description=f"{SECRET} webhook"
        )
        # (completed and failed jobs of A also carry usage rows: the services write them with the final state)
        self.a_quota = QuotaFactory(brand=personas.brand_a, monthly_token_limit=1000)
        self.a_key = api_key_create(brand=personas.brand_a, user=personas.adam, name=f"{SECRET} key")[0]
        # A service key of brand B: it must see of A no more than bob does.
        self.b_raw_key = api_key_create(brand=personas.brand_b, user=personas.bob, name="bravo key")[1]
        self.a_pending = next(j for j in self.a_jobs if j.status == JobStatus.PENDING)
        self.a_running = next(j for j in self.a_jobs if j.status == JobStatus.RUNNING)
        # A bulk submission of A holding its pending job (batches app).
        self.a_batch = BatchFactory(
            brand=personas.brand_a, job_type=self.a_pending.job_type, description=f"{SECRET} batch", total_jobs=1
        )
        BatchJobFactory(job=self.a_pending, batch=self.a_batch, line=0, custom_id=SECRET)

    def a_markers(self) -> set[str]:
        return {job.job_id for job in self.a_jobs} | {SECRET}


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """Built once for the module (like setUpTestData); each test runs in a savepoint rolled back after it."""
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            yield World(Personas())
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def _each_test_in_a_savepoint(world, db):
    """`db` after `world`: the test's atomic block nests inside the module's, so its writes roll back."""


# Which object of brand A an operation's path parameters name. A new endpoint with a path parameter must be
# added here (test_every_operation_with_an_id_is_covered fails until it is).
OBJECT_OF_A: dict[str, Callable[[World], dict[str, str]]] = {
    "/ai/jobs/{id}/": lambda w: {"id": str(w.a_pending.pk)},
    "/ai/jobs/{id}/cancel/": lambda w: {"id": str(w.a_pending.pk)},
}
# A's webhook endpoint (not a job: its own 404 code).
WEBHOOK_OF_A: dict[str, Callable[[World], dict[str, str]]] = {
    "/ai/webhooks/{id}/": lambda w: {"id": str(w.a_webhook.pk)},
    "/ai/webhooks/{id}/deliveries/": lambda w: {"id": str(w.a_webhook.pk)},
    "/ai/webhooks/{id}/rotate_secret/": lambda w: {"id": str(w.a_webhook.pk)},
}
# A's API key (its own 404 code).
API_KEY_OF_A: dict[str, Callable[[World], dict[str, str]]] = {
    "/ai/api-keys/{id}/": lambda w: {"id": str(w.a_key.pk)},
    "/ai/api-keys/{id}/revoke/": lambda w: {"id": str(w.a_key.pk)},
}

# A's batch (bulk submission: its own 404 code), by pk or batch_id.
BATCH_OF_A: dict[str, Callable[[World], dict[str, str]]] = {
    "/ai/batches/{id}/": lambda w: {"id": str(w.a_batch.pk)},
    "/ai/batches/{id}/cancel/": lambda w: {"id": str(w.a_batch.pk)},
    "/ai/batches/{id}/results/": lambda w: {"id": str(w.a_batch.pk)},
}
# Global catalogues: every authenticated user reads them, whatever the brand (the environment endpoint's
# capacity limits: the operator's, one per provider).
SHARED = {"/ai/job-types/{id}/", "/ai/providers/{name}/capacity/"}


# Catalogues and company-level resources: they hold no row of any brand; /ai/brand/ is the request's brand itself.
WITHOUT_BRAND_ROWS = {
    "/ai/job-types/",
    "/ai/openai/chat/models/",
    "/ai/providers/",
    "/ai/providers/credentials/",
    "/ai/brand/",
}


def test_every_operation_with_an_id_is_covered():
    from ai_usage.tests.api.test_persona_isolation import ISOLATED_PATHS  # quotas and credentials: tested there

    uncovered = (
        {path for _, path in WITH_ID}
        - set(OBJECT_OF_A)
        - set(WEBHOOK_OF_A)
        - set(API_KEY_OF_A)
        - set(BATCH_OF_A)
        - SHARED
        - ISOLATED_PATHS
    )
    assert not uncovered, f"add these paths to OBJECT_OF_A or SHARED: {sorted(uncovered)}"


def _url(path: str, params: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: params[m.group(1)], path)


def _call(client, method: str, url: str):
    body = {"description": "taken over", "priority": "urgent"} if method in {"POST", "PUT", "PATCH"} else None
    send = getattr(client, method.lower())
    return send(url, body, format="json") if body else send(url)


def _snapshot(job: AIJob) -> tuple:
    fields = ("status", "description", "priority", "updated_at")
    return AIJob.objects.filter(pk=job.pk).values_list(*fields).first()


@pytest.mark.parametrize("method,path", [op for op in WITH_ID if op[1] in OBJECT_OF_A])
@pytest.mark.parametrize("outsider", ["bob", "carol"])
@pytest.mark.parametrize("id_form", ["pk", "job_id"])
def test_another_brands_object_is_a_404_and_stays_untouched(world, client_for, method, path, outsider, id_form):
    params = OBJECT_OF_A[path](world)
    if id_form == "job_id":
        params = {k: AIJob.objects.get(pk=v).job_id for k, v in params.items()}
    user = getattr(world.p, outsider)
    before = _snapshot(world.a_pending)

    response = _call(client_for(user), method, _url(path, params))

    assert response.status_code == 404, response.content
    assert response.json()["error_code"] == "JOB_NOT_FOUND"
    assert _snapshot(world.a_pending) == before
    assert world.a_pending.events.count() == 1


@pytest.mark.parametrize("method,path", [op for op in WITH_ID if op[1] in WEBHOOK_OF_A])
@pytest.mark.parametrize("outsider", ["bob", "carol"])
def test_another_brands_webhook_is_a_404_and_stays_untouched(world, client_for, method, path, outsider):
    before = WebhookEndpoint.objects.filter(pk=world.a_webhook.pk).values_list("url", "secret", "description")[0]

    response = _call(client_for(getattr(world.p, outsider)), method, _url(path, WEBHOOK_OF_A[path](world)))

    assert response.status_code == 404, response.content
    assert response.json()["error_code"] == "WEBHOOK_NOT_FOUND"
    assert (
        WebhookEndpoint.objects.filter(pk=world.a_webhook.pk).values_list("url", "secret", "description")[0] == before
    )


@pytest.mark.parametrize("method,path", [op for op in WITH_ID if op[1] in API_KEY_OF_A])
@pytest.mark.parametrize("outsider", ["bob", "carol"])
def test_another_brands_api_key_is_a_404_and_stays_untouched(world, client_for, method, path, outsider):
    response = _call(client_for(getattr(world.p, outsider)), method, _url(path, API_KEY_OF_A[path](world)))

    assert response.status_code == 404, response.content
    assert response.json()["error_code"] == "API_KEY_NOT_FOUND"
    world.a_key.refresh_from_db()
    assert world.a_key.revoked_at is None


@pytest.mark.parametrize("path", [path for _, path in ROW_READS])
def test_another_brands_api_key_sees_no_row_of_brand_a(world, path):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {world.b_raw_key}")
    for params in _query_variants(world):
        response = client.get(path, params)
        assert response.status_code < 500, (params, response.content)
        if response.status_code == 200:
            assert _leaks(world, response) == [], (params, response.content[:300])
    job = world.a_pending
    assert client.get(f"/ai/jobs/{job.job_id}/").status_code == 404
    assert client.get("/ai/jobs/", HTTP_X_BRAND_ID=str(world.p.brand_a.id)).json()["error_code"] == (
        "BRAND_ACCESS_DENIED"
    )


@pytest.mark.parametrize("method,path", [op for op in WITH_ID if op[1] in BATCH_OF_A])
@pytest.mark.parametrize("outsider", ["bob", "carol"])
@pytest.mark.parametrize("id_form", ["pk", "batch_id"])
def test_another_brands_batch_is_a_404_and_its_jobs_stay_untouched(world, client_for, method, path, outsider, id_form):
    params = BATCH_OF_A[path](world)
    if id_form == "batch_id":
        params = {"id": world.a_batch.batch_id}
    before = _snapshot(world.a_pending)

    response = _call(client_for(getattr(world.p, outsider)), method, _url(path, params))

    assert response.status_code == 404, response.content
    assert response.json()["error_code"] == "BATCH_NOT_FOUND"
    assert _snapshot(world.a_pending) == before
    assert Batch.objects.get(pk=world.a_batch.pk).cancel_requested_at is None


@pytest.mark.parametrize("method,path", [op for op in WITH_ID if op[1] in BATCH_OF_A])
def test_the_owning_brand_reaches_its_batch(world, client_for, method, path):
    response = _call(client_for(world.p.alice), method, _url(path, BATCH_OF_A[path](world)))

    assert response.status_code == 200, response.content


@pytest.mark.parametrize("method,path", [op for op in WITH_ID if op[1] in OBJECT_OF_A])
def test_the_owning_brand_reaches_the_same_object(world, client_for, method, path):
    """The control for the test above: the id used there is a real, reachable object."""
    response = _call(client_for(world.p.alice), method, _url(path, OBJECT_OF_A[path](world)))

    assert response.status_code in {200, 204}, response.content


@pytest.mark.parametrize("path", sorted(SHARED))
def test_shared_catalogues_are_readable_by_every_brand(world, client_for, path):
    for user in (world.p.alice, world.p.bob, world.p.carol):
        assert client_for(user).get(_url(path, {"id": "1", "name": "openai"})).status_code == 200


def _leaks(world: World, response) -> list[str]:
    text = response.content.decode()
    found = [marker for marker in world.a_markers() if marker in text]
    a_id = world.p.brand_a.id

    def walk(node):
        if isinstance(node, dict):
            brand = node.get("brand")
            if node.get("brand_id") == a_id or (isinstance(brand, dict) and brand.get("id") == a_id):
                found.append(f"row of brand A: {json.dumps(node)[:200]}")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(response.json())
    return found


def _query_variants(world: World) -> list[dict]:
    a_job = world.a_jobs[0]
    variants = [
        {},
        {"search": SECRET},
        {"search": a_job.job_id},
        {"search": "chat"},
        {"created_by": str(world.p.alice.id)},
        {"job_type": "chat_completion"},
        {"ordering": "-progress_percentage"},
        {"page_size": "100"},
        {"scope": "company"},
        {"progress_percentage__gte": "0"},
        {"is_async": "false"},
    ]
    variants += [{"status": status} for status in JobStatus.values]
    return variants


@pytest.mark.parametrize("path", [path for _, path in ROW_READS])
@pytest.mark.parametrize("outsider", ["bob", "carol"])
def test_rows_of_another_brand_never_appear_whatever_the_query(world, client_for, path, outsider):
    client = client_for(getattr(world.p, outsider))
    answered = 0
    for params in _query_variants(world):
        response = client.get(path, params)
        assert response.status_code < 500, (params, response.content)
        if response.status_code == 200:
            answered += 1
            assert _leaks(world, response) == [], (params, response.content[:300])
    assert answered, "at least one variant must succeed or this test proves nothing"


@pytest.mark.parametrize("path", [path for _, path in ROW_READS])
def test_the_leak_detector_sees_brand_a_rows_from_inside_brand_a(world, client_for, path):
    """Control: for the owning brand these endpoints do show A's rows (except catalogues with no rows)."""
    responses = [client_for(world.p.alice).get(path, params) for params in _query_variants(world)]
    leaked = [r for r in responses if r.status_code == 200 and _leaks(world, r)]
    if path in WITHOUT_BRAND_ROWS:
        assert not leaked
    else:
        assert leaked


def test_counts_filters_and_by_status_only_count_the_brands_own_jobs(world, client_for):
    bob = client_for(world.p.bob)

    assert bob.get("/ai/jobs/").json()["count"] == len(world.b_jobs)
    assert bob.get("/ai/jobs/", {"status": "pending"}).json()["count"] == 1
    assert bob.get("/ai/jobs/", {"status": "running"}).json()["count"] == 0
    assert bob.get("/ai/jobs/", {"job_type": "chat_completion"}).json()["count"] == len(world.b_jobs)
    assert bob.get("/ai/jobs/", {"search": SECRET}).json()["count"] == 0
    assert bob.get("/ai/jobs/", {"created_by": world.p.alice.id}).json()["count"] == 0
    for status in JobStatus.values:
        expected = sum(1 for j in world.b_jobs if j.status == status)
        assert bob.get("/ai/jobs/by_status/", {"status": status}).json()["count"] == expected


def test_the_dashboard_counts_only_the_brands_own_jobs(world, client_for):
    body = client_for(world.p.bob).get("/ai/jobs/dashboard/").json()

    assert body["stats"]["total_jobs"] == len(world.b_jobs)
    assert [b["brand_id"] for b in body["brand_breakdown"]] == [world.p.brand_b.id]
    assert sum(t["count"] for t in body["top_job_types"]) == len(world.b_jobs)
    assert sum(d["jobs"] for d in body["daily_activity"]) == len(world.b_jobs)


def test_a_company_dashboard_never_spans_another_company(world, client_for):
    carol = client_for(world.p.carol).get("/ai/jobs/dashboard/", {"scope": "company"})

    assert carol.status_code == 200
    assert [b["brand_id"] for b in carol.json()["brand_breakdown"]] == [world.p.brand_z.id]
    assert carol.json()["stats"]["total_jobs"] == len(world.z_jobs)


@pytest.mark.parametrize("user", ["alice", "adam", "bob"])
def test_company_scope_is_refused_to_anyone_but_a_company_admin(world, client_for, user):
    response = client_for(getattr(world.p, user)).get("/ai/jobs/dashboard/", {"scope": "company"})

    assert response.status_code == 403
    assert response.json()["error_code"] == "COMPANY_ADMIN_REQUIRED"


def test_an_outsider_cannot_reach_brand_a_by_naming_it(world, client_for):
    for user in (world.p.bob, world.p.carol):
        for method, path in OPERATIONS:
            if path in SHARED:
                continue
            default = lambda w: {"id": str(w.a_quota.pk)}  # noqa: E731 - quota and credential paths
            found = OBJECT_OF_A.get(path) or WEBHOOK_OF_A.get(path) or API_KEY_OF_A.get(path) or default
            url = _url(path, found(world))
            response = _call(client_for(user, world.p.brand_a), method, url)
            assert response.status_code == 403, (user, method, path, response.content)
            assert response.json()["error_code"] == "BRAND_ACCESS_DENIED"
    assert AIJob.objects.filter(brand=world.p.brand_a).count() == len(world.a_jobs)


# --- the SSE streams (documented, but their bodies stream: not called like the other operations) --------

# Each one is checked here for the id case; their streaming bodies are scoped in their own tests
# (ai_core/tests/api/test_events.py).
STREAMS = {
    "/ai/jobs/{pk}/events/": lambda w: {"pk": str(w.a_pending.pk)},
    "/ai/jobs/events/": None,
}


def _ai_routes() -> set[str]:
    from django.urls import URLPattern, URLResolver, get_resolver

    def walk(patterns, prefix):
        for entry in patterns:
            route = prefix + str(entry.pattern)
            if isinstance(entry, URLResolver):
                yield from walk(entry.url_patterns, route)
            elif isinstance(entry, URLPattern):
                yield route

    routes = set()
    for route in walk(get_resolver().url_patterns, "/"):
        if not route.startswith("/ai/"):
            continue
        route = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", route).replace("^", "").replace("$", "")
        route = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route).replace("\\.", ".")
        if "{format}" not in route and "." not in route:
            routes.add(route)
    return routes


def test_every_ai_route_is_covered_here():
    documented = {re.sub(r"\{\w+\}", "{}", path) for _, path in OPERATIONS}
    routes = {route for route in _ai_routes() if re.sub(r"\{\w+\}", "{}", route) not in documented}
    missing = sorted(routes - set(STREAMS))
    assert not missing, f"document these in the OpenAPI schema (streams: add them to STREAMS): {missing}"


@pytest.mark.parametrize("path", [p for p, ids in STREAMS.items() if ids])
@pytest.mark.parametrize("outsider", ["bob", "carol"])
def test_streams_with_an_id_are_a_404_for_another_brand(world, client_for, path, outsider):
    response = client_for(getattr(world.p, outsider)).get(_url(path, STREAMS[path](world)))

    assert response.status_code == 404
    assert response.json()["error_code"] == "JOB_NOT_FOUND"
