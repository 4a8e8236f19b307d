"""The whole path with real Celery worker processes: API → broker → worker → provider → final state.

Runs on both passes (SQLite + embedded broker, PostgreSQL + Redis): one worker for the module.
"""

import pytest
from django.db import transaction

from ai_core.dispatch import RUN_JOB_TASK
from ai_core.models import AIJob, AIJobType
from config.celery_app import app
from conftest import make_client
from testing.jobs import all_final, event_trail, submit, wait_for
from testing.workers import purge_broker

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
CONCURRENCY = 4


@pytest.fixture(scope="module")
def worker(workers):
    purge_broker()
    # CONCURRENCY calls at once on either executor: the fairness test needs a backlog larger than the room.
    workers.start(concurrency=CONCURRENCY, AICORE_ENGINE_IN_FLIGHT=str(CONCURRENCY))
    return workers


def status_of(job) -> str:
    return AIJob.objects.filter(pk=job.pk).values_list("status", flat=True).first()


def test_prefer_wait_returns_the_finished_job_from_a_worker(worker, personas, job_types):
    client = make_client(personas.alice, personas.brand_a)
    body = {
        "job_type": "chat_completion",
        "input_data": {
            "model": "echo-1",
            "messages": [{"role": "user", "content": "bonjour"}],
            "echo": {"delay_ms": 600, "chunks": 3},
        },
    }
    response = client.post("/ai/jobs/", body, format="json", HTTP_PREFER="wait=30")
    assert response.status_code == 201, response.content
    job = response.json()
    assert job["status"] == "completed", (job, worker.logs())
    assert job["progress_percentage"] == 100 and job["result_data"]["completion"] == "Echo: bonjour"
    assert response["Preference-Applied"] == "wait=30"
    detail = client.get(f"/ai/jobs/{job['job_id']}/").json()
    assert [e["to_status"] for e in detail["events"]] == ["pending", "running", "completed"]


def test_the_worker_runs_the_wake_up_the_api_process_published(worker, job_types, make_brands, monkeypatch):
    """The lean wake-up (ai_core.dispatch.WakeUps, kernel/adapters/celery.py) is consumed as is: the job records its
    task id."""
    from kernel.adapters import celery as adapter

    published = []
    monkeypatch.setattr(adapter, "uuid", lambda: published.append(f"wake-{len(published)}") or published[-1])
    (brand,) = make_brands(1)
    job = submit(brand)
    wait_for(lambda: all_final([job.pk]), timeout=30, what=lambda: f"the job to finish\n{worker.logs()}")
    job.refresh_from_db()
    assert job.status == "completed"
    assert job.task_id in published


def test_retries_permanent_failures_and_timeouts_end_in_the_right_state(worker, job_types, make_brands):
    (brand,) = make_brands(1)
    AIJobType.objects.filter(name="text_generation").update(timeout_seconds=1)
    flaky = submit(brand, echo={"fail": "transient", "fail_times": 2})
    broken = submit(brand, echo={"fail": "permanent"})
    hopeless = submit(brand, echo={"fail": "transient"})
    slow = submit(brand, job_type="text_generation", echo={"delay_ms": 60_000, "chunks": 60})
    jobs = [flaky, broken, hopeless, slow]
    wait_for(lambda: all_final(j.pk for j in jobs), timeout=40, what="the four jobs to finish")
    for job in jobs:
        job.refresh_from_db()
    assert (flaky.status, flaky.attempts) == ("completed", 3)
    assert (broken.status, broken.attempts, broken.error_code) == ("failed", 1, "ECHO_PERMANENT")
    assert (hopeless.status, hopeless.attempts, hopeless.error_code) == ("failed", 3, "ECHO_TRANSIENT")
    assert (slow.status, slow.error_code) == ("timeout", "JOB_TIMEOUT")


def test_cancel_reaches_running_jobs_and_frees_their_slots(worker, personas, job_types):
    client = make_client(personas.alice, personas.brand_a)
    long_jobs = [submit(personas.brand_a, echo={"delay_ms": 120_000, "chunks": 1000}) for _ in range(CONCURRENCY)]
    wait_for(lambda: all(status_of(j) == "running" for j in long_jobs), timeout=30, what="all slots busy")
    for job in long_jobs:
        response = client.post(f"/ai/jobs/{job.job_id}/cancel/")
        assert response.status_code == 200 and response.json()["job"]["status"] == "cancelled"
    # Every slot was held by a two-minute stream: a new job only runs if the streams were abandoned.
    quick = submit(personas.brand_a)
    wait_for(lambda: status_of(quick) == "completed", timeout=30, what="a freed slot to run a new job")
    for job in long_jobs:
        job.refresh_from_db()
        assert job.status == "cancelled" and job.result_data is None
        assert [e[1] for e in event_trail(job.pk)] == ["pending", "running", "cancelled"]


def test_a_message_delivered_twice_runs_the_job_once(worker, job_types, make_brands):
    (brand,) = make_brands(1)
    job = submit(brand, echo={"delay_ms": 800, "chunks": 4})
    for _ in range(2):  # the same message again (same task id), as a broker redelivery would
        app.send_task(RUN_JOB_TASK, args=[job.pk], task_id=f"duplicate-{job.pk}")
    wait_for(lambda: all_final([job.pk]), timeout=30, what="the job to finish")
    job.refresh_from_db()
    assert job.status == "completed" and job.attempts == 1
    assert event_trail(job.pk) == [("", "pending", 0), ("pending", "running", 1), ("running", "completed", 1)]


def test_one_brands_backlog_does_not_starve_another_brands_job(worker, job_types, make_brands):
    busy, quiet = make_brands(2)
    with transaction.atomic():
        backlog = [submit(busy, echo={"delay_ms": 500}) for _ in range(60)]
    wait_for(
        lambda: AIJob.objects.filter(brand=busy, status="running").exists(),
        timeout=30,
        what="the backlog to start",
    )
    single = submit(quiet)
    wait_for(lambda: status_of(single) == "completed", timeout=30, what="the other brand's job")
    still_pending = AIJob.objects.filter(brand=busy, status="pending").count()
    AIJob.objects.filter(pk__in=[j.pk for j in backlog], status="pending").update(
        available_at="2999-01-01T00:00:00Z"
    )  # leave the backlog alone for the next tests
    assert still_pending >= 30, f"the single job waited behind the backlog ({still_pending} left)"
