"""The jobs in the Django admin: finished (and running) jobs are read-only; a pending job's description,
priority and input change through job_update, and nothing moves a job to another brand."""

import pytest
from django.urls import reverse

from ai_core.models import AIJob, JobStatus
from ai_core.tests.factories import AIJobFactory
from business.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True, company=None))
    return client


def _change_url(job):
    return reverse("admin:ai_core_aijob_change", args=[job.pk])


def _form(job, **changes):
    """What the change form posts: its editable fields (and an attempt to move the job to another brand)."""
    data = {
        "description": job.description,
        "priority": job.priority,
        "input_data": '{"messages": [{"role": "user", "content": "edited"}]}',
        "events-TOTAL_FORMS": "0",
        "events-INITIAL_FORMS": "0",
        **changes,
    }
    return data


@pytest.mark.parametrize(
    "status", [JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMEOUT, JobStatus.RUNNING]
)
def test_a_job_the_workflow_owns_is_read_only(staff, personas, status):
    job = AIJobFactory(brand=personas.brand_a, created_by=personas.alice, status=status)
    before = AIJob.objects.filter(pk=job.pk).values().get()

    page = staff.get(_change_url(job))
    posted = staff.post(_change_url(job), _form(job, description="rewritten", brand=personas.brand_b.pk))

    assert page.status_code == 200
    assert b'name="_save"' not in page.content and b'name="input_data"' not in page.content
    assert posted.status_code == 403
    assert AIJob.objects.filter(pk=job.pk).values().get() == before


def test_a_pending_job_changes_through_job_update_and_keeps_its_brand(staff, personas):
    job = AIJobFactory(brand=personas.brand_a, created_by=personas.alice, status=JobStatus.PENDING)

    page = staff.get(_change_url(job))
    posted = staff.post(
        _change_url(job), _form(job, description="rewritten", priority="urgent", brand=personas.brand_b.pk)
    )

    assert b'name="input_data"' in page.content and b'name="brand"' not in page.content
    assert posted.status_code == 302
    job.refresh_from_db()
    assert (job.description, job.priority, job.brand_id) == ("rewritten", "urgent", personas.brand_a.pk)
    assert job.input_data == {"messages": [{"role": "user", "content": "edited"}]}


def test_an_invalid_input_is_refused_with_a_message_and_nothing_stored(staff, personas):
    job = AIJobFactory(brand=personas.brand_a, created_by=personas.alice, status=JobStatus.PENDING)
    before = AIJob.objects.filter(pk=job.pk).values().get()

    posted = staff.post(_change_url(job), _form(job, input_data='{"no_messages": true}'), follow=True)

    assert b"Not saved" in posted.content and b"VALIDATION_ERROR" in posted.content
    assert AIJob.objects.filter(pk=job.pk).values().get() == before


def test_the_job_list_shows_the_columns_and_filters_people_use(staff, personas):
    job = AIJobFactory(brand=personas.brand_a, created_by=personas.alice, status=JobStatus.COMPLETED)

    page = staff.get(reverse("admin:ai_core_aijob_changelist"), {"status__exact": "completed", "q": job.job_id})

    text = page.content.decode()
    for column in ("Job id", "Job type", "Brand", "Status", "Priority", "Progress percentage", "Created at"):
        assert f">{column}<" in text or f">{column}</a>" in text, column
    assert job.job_id in text


def test_the_admin_and_the_pages_link_the_local_favicon(staff, client):
    icon = '<link rel="icon" href="/static/web/favicon.svg"'

    assert icon in staff.get(reverse("admin:index")).content.decode()
    assert icon in staff.get("/dashboard/").content.decode()
    assert staff.get("/favicon.ico").headers["Location"] == "/static/web/favicon.svg"


def test_deleting_in_the_admin_keeps_the_api_counts_true(staff, personas, client_for):
    jobs = [
        AIJobFactory(brand=personas.brand_a, created_by=personas.alice, status=status)
        for status in (JobStatus.PENDING, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.RUNNING)
    ]
    pending, completed, failed, running = jobs

    changelist = reverse("admin:ai_core_aijob_changelist")
    staff.post(reverse("admin:ai_core_aijob_delete", args=[pending.pk]), {"post": "yes"})
    staff.post(changelist, {"action": "delete_selected", "_selected_action": [completed.pk], "post": "yes"})
    refused = staff.post(reverse("admin:ai_core_aijob_delete", args=[running.pk]), {"post": "yes"})
    with_a_running_one = staff.post(
        changelist, {"action": "delete_selected", "_selected_action": [failed.pk, running.pk], "post": "yes"}
    )

    assert refused.status_code == 403
    assert with_a_running_one.status_code == 403  # Django refuses the whole selection
    assert set(AIJob.objects.values_list("pk", flat=True)) == {failed.pk, running.pk}
    api = client_for(personas.alice, personas.brand_a)
    assert api.get("/ai/jobs/").json()["count"] == 2  # from the roll-up: it moved with every delete
    assert api.get("/ai/jobs/", {"status": "completed"}).json()["count"] == 0
