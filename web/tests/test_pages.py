"""Dashboard pages rendered by Django (the browser flow is in test_browser.py)."""

import pytest
from django.test import Client

from ai_core import services

pytestmark = pytest.mark.usefixtures("job_types")
CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def _login(user, password) -> Client:
    client = Client()
    assert client.post("/login/", {"username": user.username, "password": password}).status_code == 302
    return client


def test_pages_need_a_login(db):
    assert Client().get("/dashboard/").status_code == 302
    assert Client().get("/dashboard/").url.startswith("/login/")


def test_dashboard_charts_switcher_and_company_breakdown(personas):
    services.job_create(brand=personas.brand_b, user=personas.bob, job_type="chat_completion", input_data=CHAT)
    ada = _login(personas.acme_admin, "ada-pass-1")
    page = ada.get("/dashboard/").content.decode()
    assert 'id="chart-daily-jobs"' in page and "<svg" in page and 'id="chart-brands"' in page
    options = page[page.index('id="brand-select"') : page.index("</select>", page.index('id="brand-select"'))]
    assert ">A<" in options and ">B<" in options and ">Z<" not in options  # only her company's brands

    assert ada.post("/dashboard/brand/", {"brand": personas.brand_z.id}).status_code == 302
    assert ada.get("/dashboard/").context["brand"] == personas.brand_a  # refused: still on her own brand
    ada.post("/dashboard/brand/", {"brand": personas.brand_b.id})
    assert ada.get("/dashboard/").context["brand"] == personas.brand_b

    alice = _login(personas.alice, "alice-pass-1")
    page = alice.get("/dashboard/").content.decode()
    assert 'id="chart-brands"' not in page  # brand breakdown is for company admins


def test_submit_job_page_and_cancel(personas):
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
    alice.post(f"/dashboard/jobs/{job_id}/cancel/")
    assert 'class="badge cancelled"' in alice.get(answer.url).content.decode()

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
    page = client.get(answer.url)

    assert answer.status_code == 302 and answer.url == "/dashboard/"
    assert page.status_code == 403 and "You belong to no brand" in page.content.decode()
    job.refresh_from_db()
    assert job.status == JobStatus.PENDING
