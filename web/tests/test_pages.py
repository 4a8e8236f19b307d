"""Console pages rendered by Django: each page's content and its brand scoping (the browser run is in
test_browser.py / test_console_browser.py)."""

import csv
import io
import json
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from ai_core import services
from ai_providers.models import Provider, ProviderCredential
from ai_usage.models import Quota
from web.models import ConsolePreference
from webhooks.models import WebhookDelivery
from webhooks.tests.factories import WebhookDeliveryFactory, WebhookEndpointFactory

pytestmark = pytest.mark.usefixtures("job_types")
CHAT = {"messages": [{"role": "user", "content": "hi"}]}
KEY = "sk-proj-console-0123456789"  # the fake provider refuses only "bad-key"


def _login(user, password) -> Client:
    client = Client()
    assert client.post("/login/", {"username": user.username, "password": password}).status_code == 302
    return client


def finished(brand, user, *, model="gpt-4o-mini", tokens=(1000, 100), fail=False, description=""):
    job, _ = services.job_create(
        brand=brand,
        user=user,
        job_type="chat_completion",
        description=description,
        input_data={**CHAT, "model": model},
    )
    attempt = services.job_start(job_pk=job.pk).attempt
    if fail:
        services.job_fail(job_pk=job.pk, attempt=attempt, error_message="the provider said no")
    else:
        services.job_complete(
            job_pk=job.pk,
            attempt=attempt,
            result_data={"completion": "ok"},
            input_tokens=tokens[0],
            output_tokens=tokens[1],
        )
    return job


def test_pages_need_a_login(db):
    for url in ["/dashboard/", "/dashboard/jobs/", "/dashboard/usage/", "/dashboard/providers/"]:
        answer = Client().get(url)
        assert answer.status_code == 302 and answer.url.startswith("/login/")


def test_overview_charts_switcher_and_company_breakdown(personas):
    services.job_create(brand=personas.brand_b, user=personas.bob, job_type="chat_completion", input_data=CHAT)
    ada = _login(personas.acme_admin, "ada-pass-1")
    page = ada.get("/dashboard/").content.decode()
    for chart in ["daily-jobs", "daily-cost", "daily-tokens", "status", "types", "latency", "brands"]:
        assert f'id="chart-{chart}"' in page
    assert "/static/vendor/chart.js/chart.umd.min.js" in page  # served locally, from npm
    nav = page[page.index('aria-label="Console sections"') :]
    for label in ["Overview", "Jobs", "Usage &amp; cost", "Quotas", "Providers", "Webhooks"]:
        assert label in nav
    options = page[page.index('id="brand-select"') : page.index("</select>", page.index('id="brand-select"'))]
    assert ">A<" in options and ">B<" in options and ">Z<" not in options  # only her company's brands

    assert ada.post("/dashboard/brand/", {"brand": personas.brand_z.id}).status_code == 302
    assert ada.get("/dashboard/").context["brand"] == personas.brand_a  # refused: still on her own brand
    ada.post("/dashboard/brand/", {"brand": personas.brand_b.id})
    assert ada.get("/dashboard/").context["brand"] == personas.brand_b

    alice = _login(personas.alice, "alice-pass-1")
    page = alice.get("/dashboard/").content.decode()
    assert 'id="chart-brands"' not in page  # brand breakdown is for company admins


def test_the_overview_counts_statuses_tokens_and_latency(personas, llm_env):
    finished(personas.brand_a, personas.alice, tokens=(1000, 500))
    finished(personas.brand_a, personas.alice, fail=True)
    finished(personas.brand_b, personas.bob, tokens=(7777, 0))  # brand B: not in A's numbers
    answer = _login(personas.alice, "alice-pass-1").get("/dashboard/")
    charts = {c["id"]: c for c in answer.context["charts"]}
    assert charts["chart-status"]["labels"] == ["completed (1)", "failed (1)"]  # counts on the breakdown
    assert sum(charts["chart-daily-tokens"]["series"][0]["values"]) == 1500
    assert answer.context["latency"][0]["name"] == "chat_completion" and answer.context["latency"][0]["jobs"] == 2
    assert "7777" not in answer.content.decode()


def test_a_new_login_opens_on_the_brand_worked_on_last_else_the_first_by_id(personas):
    first = _login(personas.acme_admin, "ada-pass-1")
    assert first.get("/dashboard/").context["brand"] == personas.brand_a  # first brand by id
    first.post("/dashboard/brand/", {"brand": personas.brand_b.id})
    assert ConsolePreference.objects.get(user=personas.acme_admin).last_brand == personas.brand_b
    again = _login(personas.acme_admin, "ada-pass-1")  # a new session
    assert again.get("/dashboard/").context["brand"] == personas.brand_b


def test_a_link_to_a_job_of_another_of_the_users_brands_switches_to_it(personas):
    job_b, _ = services.job_create(
        brand=personas.brand_b, user=personas.bob, job_type="chat_completion", input_data=CHAT
    )
    ada = _login(personas.acme_admin, "ada-pass-1")
    assert ada.get("/dashboard/").context["brand"] == personas.brand_a
    answer = ada.get(f"/dashboard/jobs/{job_b.job_id}/", follow=True)
    assert answer.status_code == 200 and answer.context["brand"] == personas.brand_b
    assert "Switched to B" in answer.content.decode()
    assert answer.context["switch_next"] == "/dashboard/jobs/"  # switching away from a job opens the job list
    # ?brand= on any page switches too; a brand of another company does not.
    assert ada.get(f"/dashboard/jobs/?brand={personas.brand_a.id}").context["brand"] == personas.brand_a
    assert ada.get(f"/dashboard/jobs/?brand={personas.brand_z.id}").context["brand"] == personas.brand_a

    alice = _login(personas.alice, "alice-pass-1")  # member of A only: B's job stays a 404
    assert alice.get(f"/dashboard/jobs/{job_b.job_id}/").status_code == 404
    carol = _login(personas.carol, "carol-pass-1")
    assert carol.get(f"/dashboard/jobs/{job_b.job_id}/").status_code == 404


def test_the_job_list_filters_searches_orders_and_pages(personas):
    for i in range(30):
        services.job_create(
            brand=personas.brand_a,
            user=personas.alice,
            job_type="chat_completion",
            description=f"job number {i}",
            priority="high" if i == 3 else "normal",
            input_data=CHAT,
        )
    services.job_create(brand=personas.brand_b, user=personas.bob, job_type="chat_completion", input_data=CHAT)
    alice = _login(personas.alice, "alice-pass-1")
    first = alice.get("/dashboard/jobs/")
    assert first.context["pager"].paginator.count == 30 and len(first.context["pager"].object_list) == 25
    assert 'id="next-page"' in first.content.decode()
    second = alice.get("/dashboard/jobs/?page=2")
    assert [j.description for j in second.context["pager"]] == [f"job number {i}" for i in range(4, -1, -1)]
    assert [j.description for j in alice.get("/dashboard/jobs/?search=number 2").context["pager"]][-1] == "job number 2"

    def count(query: str) -> int:
        return alice.get(f"/dashboard/jobs/?{query}").context["pager"].paginator.count

    assert count(f"created_by={personas.alice.pk}") == 30 and count(f"created_by={personas.adam.pk}") == 0
    # The creator picker offers who may act on brand A (its members, its company's admins), never brand B's bob.
    assert {u.username for u in first.context["creators"]} == {"alice", "adam", "ada"}
    assert (
        f'<option value="{personas.alice.pk}" selected>alice (me)'
        in alice.get(f"/dashboard/jobs/?created_by={personas.alice.pk}").content.decode()
    )
    assert count("is_async=true") + count("is_async=false") == 30
    high = alice.get("/dashboard/jobs/?priority=high").context["pager"]
    assert [j.description for j in high] == ["job number 3"]
    bad = alice.get("/dashboard/jobs/?status=nope")
    assert bad.status_code == 200 and "status:" in bad.content.decode() and bad.context["pager"].paginator.count == 0
    rows = alice.get("/dashboard/jobs/?fragment=rows").content.decode()
    assert rows.lstrip().startswith("<div") and "<html" not in rows  # the live list's refresh
    assert "page=2" in rows and "fragment" not in rows  # its pager links to whole pages


def test_cancel_asks_first_and_a_cancelled_job_says_so(personas):
    job, _ = services.job_create(
        brand=personas.brand_a, user=personas.alice, job_type="chat_completion", input_data=CHAT
    )
    alice = _login(personas.alice, "alice-pass-1")
    page = alice.get(f"/dashboard/jobs/{job.job_id}/").content.decode()
    assert 'id="cancel-dialog"' in page and "No result yet" in page
    confirm = alice.get(f"/dashboard/jobs/{job.job_id}/cancel/")  # the no-JavaScript confirmation step
    assert confirm.status_code == 200 and "cannot be undone" in confirm.content.decode()
    job.refresh_from_db()
    assert job.status == "pending"  # asking changed nothing
    alice.post(f"/dashboard/jobs/{job.job_id}/cancel/")
    page = alice.get(f"/dashboard/jobs/{job.job_id}/").content.decode()
    assert 'class="badge cancelled"' in page and 'class="outcome cancelled"' in page and "No result yet" not in page
    assert '<time datetime="' in page and "UTC</time>" in page
    bob = _login(personas.bob, "bob-pass-1")
    assert bob.post(f"/dashboard/jobs/{job.job_id}/cancel/").status_code == 404


def test_a_failed_job_says_so_and_usage_is_a_table(personas, llm_env):
    failed = finished(personas.brand_a, personas.alice, fail=True)
    done = finished(personas.brand_a, personas.alice, tokens=(1000, 100))
    alice = _login(personas.alice, "alice-pass-1")
    page = alice.get(f"/dashboard/jobs/{failed.job_id}/").content.decode()
    assert 'class="outcome failed"' in page and "the provider said no" in page
    page = alice.get(f"/dashboard/jobs/{done.job_id}/").content.decode()
    usage = page[page.index('id="usage"') :]
    assert "Tokens total" in usage and ">1100<" in usage and "gpt-4o-mini" in usage


def test_the_usage_explorer_breaks_down_exports_csv_and_keeps_to_the_brand(personas, llm_env):
    finished(personas.brand_a, personas.alice, model="gpt-4o-mini", tokens=(1000, 0))  # $0.00015
    finished(personas.brand_a, personas.adam, model="gpt-4o", tokens=(0, 1000))  # $0.01
    finished(personas.brand_b, personas.bob, model="gpt-4o", tokens=(1_000_000, 0))  # $2.50, brand B
    alice = _login(personas.alice, "alice-pass-1")
    answer = alice.get("/dashboard/usage/?period=7")
    report = answer.context["report"]
    assert report["totals"]["jobs"] == 2 and Decimal(report["totals"]["total_cost"]) == Decimal("0.01015")
    assert {r["username"] for r in report["by_user"]} == {"alice", "adam"}
    assert "scope" not in answer.context["form"].fields  # company scope: company admins only
    assert alice.get("/dashboard/usage/?scope=company").context["report"]["totals"]["jobs"] == 2

    export = alice.get("/dashboard/usage/?period=7&format=csv")
    assert export["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(export.content.decode())))
    assert rows[0] == ["dimension", "name", "provider", "jobs", "total_tokens", "total_cost_usd"]
    models = {r[1]: r for r in rows if r[0] == "model"}
    assert set(models) == {"gpt-4o-mini", "gpt-4o"} and models["gpt-4o-mini"][5] == "0.000150"

    ada = _login(personas.acme_admin, "ada-pass-1")
    company = ada.get("/dashboard/usage/?period=7&scope=company").context["report"]
    assert company["totals"]["jobs"] == 3 and {b["brand_name"] for b in company["by_brand"]} == {"A", "B"}


def test_quotas_show_use_reservations_and_forecast_of_the_brand_only(personas, llm_env):
    company = personas.brand_a.company
    Quota.objects.create(company=company, brand=personas.brand_a, monthly_token_limit=10_000)
    Quota.objects.create(company=company, brand=personas.brand_b, monthly_token_limit=555_555)
    finished(personas.brand_a, personas.alice, tokens=(1000, 0))
    answer = _login(personas.alice, "alice-pass-1").get("/dashboard/quotas/")
    [quota] = answer.context["quotas"]
    assert quota["used"]["tokens"] == 1000 and quota["limits"]["tokens"] == 10_000
    assert quota["forecast"]["tokens"] >= 1000 and "open_reservations" in quota
    assert "555555" not in answer.content.decode()  # brand B's quota


def test_quotas_show_their_alert_thresholds_and_those_crossed_this_month(personas, llm_env):
    Quota.objects.create(company=personas.brand_a.company, brand=personas.brand_a, monthly_cost_limit=Decimal("0.004"))
    finished(personas.brand_a, personas.alice, tokens=(1000, 4000))  # $0.00255 settled: 63.75 % of the limit
    answer = _login(personas.alice, "alice-pass-1").get("/dashboard/quotas/")
    [quota] = answer.context["quotas"]
    assert quota["alert_thresholds"] == [50, 80, 100]
    assert [c["threshold"] for c in quota["crossed_thresholds"]] == [50]
    page = answer.content.decode()
    assert "Alerts at 50 %, 80 %, 100 %" in page and "crossed this month" in page


def test_providers_show_prices_to_all_and_key_forms_to_company_admins_only(personas, llm_env):
    openai = Provider.objects.get(name="openai")
    alice = _login(personas.alice, "alice-pass-1")
    page = alice.get("/dashboard/providers/").content.decode()
    assert "gpt-4o-mini" in page and "Effective from" in page
    assert f'name="p{openai.pk}-api_key"' not in page and "Test connection" not in page
    assert alice.post("/dashboard/providers/openai/credential/", {f"p{openai.pk}-api_key": "sk-x"}).status_code == 403
    assert not ProviderCredential.objects.exists()

    ada = _login(personas.acme_admin, "ada-pass-1")
    assert f'name="p{openai.pk}-api_key"' in ada.get("/dashboard/providers/").content.decode()
    ada.post("/dashboard/providers/openai/credential/", {f"p{openai.pk}-api_key": "sk-secret-value-123"})
    credential = ProviderCredential.objects.get(company=personas.brand_a.company)
    page = ada.get("/dashboard/providers/").content.decode()
    assert "sk-secret-value-123" not in page and "Test connection" in page  # write-only
    carol = _login(personas.carol, "carol-pass-1")  # company admin of another company
    assert carol.post(f"/dashboard/credentials/{credential.pk}/test/").status_code == 404


def test_webhooks_log_and_redeliver_for_admins_of_the_brand(personas, django_capture_on_commit_callbacks):
    endpoint = WebhookEndpointFactory(brand=personas.brand_a, url="https://hooks.example.com/a")
    WebhookEndpointFactory(brand=personas.brand_b, url="https://hooks.example.com/brand-b")
    delivery = WebhookDeliveryFactory(
        endpoint=endpoint,
        job_ref="ai_job_x",
        event="job.completed",
        payload={"event": "job.completed"},
        status="failed",
    )
    alice = _login(personas.alice, "alice-pass-1")
    page = alice.get("/dashboard/webhooks/").content.decode()
    assert "hooks.example.com/a" in page and "brand-b" not in page
    log = alice.get(f"/dashboard/webhooks/{endpoint.pk}/").content.decode()
    assert "ai_job_x" in log and "Redeliver" not in log  # members read the log
    redeliver = f"/dashboard/webhooks/{endpoint.pk}/deliveries/{delivery.pk}/redeliver/"
    assert alice.post(redeliver).status_code == 403

    adam = _login(personas.adam, "adam-pass-1")
    assert "Redeliver" in adam.get(f"/dashboard/webhooks/{endpoint.pk}/").content.decode()
    with django_capture_on_commit_callbacks() as published:
        assert adam.post(redeliver).status_code == 302
    again = WebhookDelivery.objects.exclude(pk=delivery.pk).get()
    assert (again.endpoint, again.payload, again.status, again.attempts) == (endpoint, delivery.payload, "pending", 0)
    assert len(published) == 1
    bob = _login(personas.bob, "bob-pass-1")
    assert bob.get(f"/dashboard/webhooks/{endpoint.pk}/").status_code == 404
    assert bob.post(redeliver).status_code == 404
    assert bob.get("/dashboard/webhooks/not-a-number/").status_code == 404

    ada = _login(personas.acme_admin, "ada-pass-1")  # company admin: A's webhook while on B switches to A
    ada.post("/dashboard/brand/", {"brand": personas.brand_b.id})
    answer = ada.get(f"/dashboard/webhooks/{endpoint.pk}/", follow=True)
    assert answer.status_code == 200 and answer.context["brand"] == personas.brand_a


def test_submit_job_page_and_bad_json(personas):
    alice = _login(personas.alice, "alice-pass-1")
    answer = alice.post(
        "/dashboard/submit/",
        {
            "job_type": "chat_completion",
            "priority": "high",
            "description": "from the page",
            "input_data": '{"messages": [{"role": "user", "content": "hi"}]}',
        },
    )
    assert answer.status_code == 302
    job_id = answer.url.rstrip("/").rsplit("/", 1)[-1]
    page = alice.get(answer.url).content.decode()
    assert job_id in page and "from the page" in page and 'id="cancel-button"' in page
    bad = alice.post(
        "/dashboard/submit/",
        {"job_type": "chat_completion", "priority": "normal", "input_data": "[1"},
        follow=True,
    )
    assert "Not valid JSON" in bad.content.decode()
    bob = _login(personas.bob, "bob-pass-1")
    assert bob.get(answer.url).status_code == 404  # another brand's job


def test_web_login_failures_are_throttled_like_the_api(personas, settings):
    settings.LOGIN_FAILURES_PER_USERNAME = 2
    for _ in range(2):
        wrong = Client().post("/login/", {"username": "alice", "password": "nope"})
        assert wrong.status_code == 200 and "Invalid username or password" in wrong.content.decode()
    refused = Client().post("/login/", {"username": "alice", "password": "alice-pass-1"})
    assert refused.status_code == 200 and "Too many failed login attempts" in refused.content.decode()
    assert (
        Client()
        .post("/auth/login/", {"username": "alice", "password": "alice-pass-1"}, content_type="application/json")
        .status_code
        == 429
    )


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example/x", "/\\evil.example/x", "\\\\evil.example", "javascript:x"]
)
def test_brand_switch_never_redirects_off_site(personas, target):
    ada = _login(personas.acme_admin, "ada-pass-1")
    response = ada.post("/dashboard/brand/", {"brand": personas.brand_b.id, "next": target})
    assert (response.status_code, response.url) == (302, "/dashboard/")


def test_brand_switch_returns_to_the_page_it_came_from(personas):
    ada = _login(personas.acme_admin, "ada-pass-1")
    response = ada.post("/dashboard/brand/", {"brand": personas.brand_b.id, "next": "/dashboard/?status=failed"})
    assert (response.status_code, response.url) == (302, "/dashboard/?status=failed")


def _submit(client, input_data: str):
    return client.post(
        "/dashboard/submit/",
        {"job_type": "chat_completion", "priority": "normal", "input_data": input_data},
        follow=True,
    )


@pytest.mark.parametrize(
    "input_data,message",
    [
        ('{"messages": [{"role": "user", "content": "\\ud800"}]}', "lone surrogate"),  # as typed: an escape
        ('{"messages": [{"role": "user", "content": "hi"}], "k\\udfff": 1}', "lone surrogate"),
        ('{"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4o\\ud800"}', "lone surrogate"),
        ('{"a": ' * 5000 + "1" + "}" * 5000, "nested too deeply"),  # was a RecursionError
        ('{"a": ' * 40 + "1" + "}" * 40, "nested too deeply"),  # the API's AICORE_MAX_JSON_DEPTH rule
    ],
)
def test_the_submit_form_refuses_input_the_api_refuses_with_a_form_error(personas, input_data, message):
    from ai_core.models import AIJob

    page = _submit(_login(personas.alice, "alice-pass-1"), input_data)

    assert page.status_code == 200
    assert message in page.content.decode()
    assert not AIJob.objects.exists()


def test_cancel_by_a_user_without_a_brand_is_refused_with_a_message(personas):
    # jobs_of(None) raised a TypeError: a 500.
    from ai_core.models import JobStatus
    from business.services import user_provision

    job, _ = services.job_create(
        brand=personas.brand_a, user=personas.alice, job_type="chat_completion", input_data=CHAT
    )
    nobody = user_provision(username="nobrand", password="nobrand-pass-1", company_name="Acme")
    client = _login(nobody, "nobrand-pass-1")

    answer = client.post(f"/dashboard/jobs/{job.job_id}/cancel/")

    assert answer.status_code == 403 and "not a member of any brand" in answer.content.decode()
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING


@pytest.mark.parametrize("url", ["/dashboard/", "/dashboard/jobs/", "/dashboard/usage/", "/dashboard/providers/"])
def test_page_queries_do_not_grow_with_the_rows(personas, llm_env, url):
    alice = _login(personas.alice, "alice-pass-1")
    finished(personas.brand_a, personas.alice)
    alice.get(url)  # warm: session, catalogue memo
    with CaptureQueriesContext(connection) as few:
        assert alice.get(url).status_code == 200
    for _ in range(6):
        finished(personas.brand_a, personas.adam, model="gpt-4o")
    with CaptureQueriesContext(connection) as many:
        assert alice.get(url).status_code == 200
    assert len(many) == len(few), [q["sql"][:120] for q in many.captured_queries]


def test_a_company_admin_stores_a_key_and_tests_the_connection_for_real(personas, llm_env, fake_llm, settings):
    settings.AICORE_ALLOW_PRIVATE_PROVIDER_URLS = True  # the fake provider listens on loopback
    openai = Provider.objects.get(name="openai")
    ada = _login(personas.acme_admin, "ada-pass-1")
    form = {f"p{openai.pk}-api_key": KEY, f"p{openai.pk}-base_url": fake_llm.openai_base_url}
    assert ada.post("/dashboard/providers/openai/credential/", form).status_code == 302
    credential = ProviderCredential.objects.get(company=personas.brand_a.company, provider=openai)
    answer = ada.post(f"/dashboard/credentials/{credential.pk}/test/", follow=True)
    assert "Connection succeeded" in answer.content.decode()
    credential.refresh_from_db()
    assert credential.last_test_ok is True
    # Replacing the key with a wrong one: the next test says so, and no key is ever shown.
    ada.post("/dashboard/providers/openai/credential/", {**form, f"p{openai.pk}-api_key": "bad-key"})
    answer = ada.post(f"/dashboard/credentials/{credential.pk}/test/", follow=True)
    page = answer.content.decode()
    assert "Incorrect API key" in page and KEY not in page and "bad-key" not in page


def test_api_keys_list_to_members_and_a_new_key_is_shown_once_to_admins(personas):
    from business.models import ApiKey
    from business.services import api_key_create, api_key_hash

    old, _ = api_key_create(brand=personas.brand_a, user=personas.adam, name="nightly export", scopes=["jobs:read"])
    api_key_create(brand=personas.brand_b, user=personas.bob, name="bravo-secret key")
    alice = _login(personas.alice, "alice-pass-1")
    page = alice.get("/dashboard/api-keys/").content.decode()
    assert "nightly export" in page and f"aic_{old.prefix}" in page and "jobs:read" in page and "adam" in page
    assert "bravo-secret" not in page
    assert 'id="api-key-form"' not in page and "Revoke" not in page  # members read the list only
    assert alice.post("/dashboard/api-keys/", {"name": "mine", "scopes": ["gateway"]}).status_code == 403
    assert alice.get(f"/dashboard/api-keys/{old.pk}/revoke/").status_code == 403
    assert alice.post(f"/dashboard/api-keys/{old.pk}/revoke/").status_code == 403
    assert ApiKey.objects.filter(brand=personas.brand_a).count() == 1
    old.refresh_from_db()
    assert old.revoked_at is None

    adam = _login(personas.adam, "adam-pass-1")
    assert 'id="api-key-form"' in adam.get("/dashboard/api-keys/").content.decode()
    answer = adam.post(
        "/dashboard/api-keys/",
        {
            "name": "gateway app",
            "scopes": ["gateway", "jobs:read"],
            "expires_at": "2099-01-31T12:00",
            "monthly_cost_limit": "12.50",
        },
    )
    assert answer.status_code == 201 and "no-store" in answer["Cache-Control"]
    raw = answer.context["created"]["raw"]
    page = answer.content.decode()
    assert raw.startswith("aic_") and raw in page and "it will not be shown again" in page
    key = ApiKey.objects.get(name="gateway app")
    assert (key.brand, key.created_by, key.scopes) == (personas.brand_a, personas.adam, ["gateway", "jobs:read"])
    assert key.monthly_cost_limit == Decimal("12.5") and key.expires_at.isoformat() == "2099-01-31T12:00:00+00:00"
    assert key.key_hash == api_key_hash(raw)  # only the hash is stored
    stored = {field.name: getattr(key, field.name) for field in ApiKey._meta.concrete_fields}
    assert not any(raw in str(value) for value in stored.values())
    again = adam.get("/dashboard/api-keys/").content.decode()
    assert raw not in again and "gateway app" in again and f"aic_{key.prefix}" in again
    assert raw not in alice.get("/dashboard/api-keys/").content.decode()

    # The key works, with the scopes chosen: the page made a real key.
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/ai/jobs/").status_code == 200


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"name": "", "scopes": ["gateway"]}, "This field is required"),
        ({"name": "x"}, "This field is required"),  # no scope at all
        ({"name": "x", "scopes": ["admin"]}, "Select a valid choice"),
        ({"name": "x", "scopes": ["gateway"], "expires_at": "2001-01-01T00:00"}, "in the future"),
        ({"name": "x", "scopes": ["gateway"], "monthly_cost_limit": "-1"}, "greater than or equal to 0"),
    ],
)
def test_a_bad_api_key_form_says_why_and_stores_nothing(personas, form, message):
    from business.models import ApiKey

    answer = _login(personas.adam, "adam-pass-1").post("/dashboard/api-keys/", form)
    assert answer.status_code == 400 and message in answer.content.decode()
    assert answer.context["created"] is None and not ApiKey.objects.exists()


def test_revoking_an_api_key_asks_first_and_another_brands_key_is_not_found(personas):
    from business.models import ApiKey
    from business.services import api_key_create

    key, raw = api_key_create(brand=personas.brand_a, user=personas.adam, name="to revoke")
    theirs, _ = api_key_create(brand=personas.brand_b, user=personas.bob, name="bravo key")
    adam = _login(personas.adam, "adam-pass-1")
    page = adam.get("/dashboard/api-keys/").content.decode()
    assert f'action="/dashboard/api-keys/{key.pk}/revoke/"' in page and 'id="revoke-dialog"' in page
    confirm = adam.get(f"/dashboard/api-keys/{key.pk}/revoke/")
    assert confirm.status_code == 200 and "Yes, revoke the key" in confirm.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is None  # asking is not revoking

    for url in [f"/dashboard/api-keys/{theirs.pk}/revoke/", "/dashboard/api-keys/not-a-number/revoke/"]:
        assert adam.get(url).status_code == 404
        assert adam.post(url).status_code == 404
    assert ApiKey.objects.get(pk=theirs.pk).revoked_at is None

    answer = adam.post(f"/dashboard/api-keys/{key.pk}/revoke/", follow=True)
    assert answer.status_code == 200 and "revoked" in answer.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is not None
    row = answer.content.decode().split(f'data-key="{key.pk}"')[1].split("</tr>")[0]
    assert "badge failed" in row and "Revoke" not in row  # no second revoke button
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api.get("/ai/jobs/").status_code == 401

    ada = _login(personas.acme_admin, "ada-pass-1")  # a company admin manages the keys of the company's brands
    ada.post("/dashboard/brand/", {"brand": personas.brand_b.id})
    assert ada.post(f"/dashboard/api-keys/{theirs.pk}/revoke/").status_code == 302
    assert ApiKey.objects.get(pk=theirs.pk).revoked_at is not None


def test_the_batches_page_shows_progress_and_cost_and_downloads_results_of_the_brand(personas, llm_env):
    from batches.services import BatchLine, batch_create

    chat = {**CHAT, "model": "gpt-4o-mini"}

    mine, _ = batch_create(
        brand=personas.brand_a,
        user=personas.alice,
        job_type="chat_completion",
        lines=[BatchLine(input_data=chat, custom_id="first"), BatchLine(input_data=chat, custom_id="second")],
        description="nightly",
    )
    theirs, _ = batch_create(
        brand=personas.brand_b, user=personas.bob, job_type="chat_completion", lines=[BatchLine(input_data=CHAT)]
    )
    first = mine.links.order_by("line").first().job
    attempt = services.job_start(job_pk=first.pk).attempt
    services.job_complete(
        job_pk=first.pk, attempt=attempt, result_data={"completion": "ok"}, input_tokens=1000, output_tokens=100
    )
    alice = _login(personas.alice, "alice-pass-1")
    answer = alice.get("/dashboard/batches/")
    page = answer.content.decode()
    nav = page[page.index('aria-label="Console sections"') :]
    assert 'href="/dashboard/batches/" aria-current="page"' in nav and 'href="/dashboard/api-keys/"' in nav
    row = page.split(f'data-batch="{mine.batch_id}"')[1].split("</tr>")[0]
    summary = answer.context["rows"][0]["summary"]
    assert summary["progress_percentage"] == 50 and Decimal(summary["cost_so_far"]) > 0
    assert "nightly" in row and "50" in row and f"${summary['cost_so_far']} so far" in row and "in_progress" in row
    assert theirs.batch_id not in page

    download = alice.get(f"/dashboard/batches/{mine.batch_id}/results/")
    assert download.status_code == 200 and download["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in b"".join(download.streaming_content).decode().splitlines()]
    assert [(row["custom_id"], row["status"]) for row in lines] == [("first", "completed"), ("second", "pending")]
    assert alice.get(f"/dashboard/batches/{theirs.batch_id}/results/").status_code == 404
