"""Races between real threads on real connections: the compare-and-set must leave exactly one winner."""

import threading

import pytest
from django.conf import settings
from django.db import connection

from ai_core import services
from ai_core.models import FINAL_STATUSES, AIJob, JobStatus
from ai_core.tests.factories import AIJobFactory, input_for
from business.errors import ApplicationError
from conftest import Personas, make_client

S = JobStatus
ROUNDS = 15

needs_postgres = pytest.mark.skipif(
    not settings.IS_POSTGRES,
    reason="SQLite takes one database-wide write lock per transaction, so writers never interleave: "
    "the race only exists (and is only tested) on PostgreSQL",
)


def run_together(*actions):
    """Start the actions at the same instant on their own threads (and connections); return their outcomes."""
    barrier = threading.Barrier(len(actions))
    outcomes: list = [None] * len(actions)

    def runner(index, action):
        try:
            barrier.wait(timeout=10)
            outcomes[index] = action()
        except ApplicationError as exc:
            outcomes[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=runner, args=(i, a)) for i, a in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_cancel_racing_complete_ends_in_exactly_one_final_state_with_one_final_event():
    personas = Personas()
    winners = set()
    for _ in range(ROUNDS):
        job = AIJobFactory(brand=personas.brand_a, created_by=personas.alice)
        attempt = services.job_start(job_pk=job.pk).attempt

        cancel, complete = run_together(
            lambda pk=job.pk: services.job_cancel(job_pk=pk),
            lambda pk=job.pk, attempt=attempt: services.job_complete(
                job_pk=pk, attempt=attempt, result_data={"text": "done"}
            ),
        )

        job.refresh_from_db()
        succeeded = [o for o in (cancel, complete) if not isinstance(o, ApplicationError)]
        assert len(succeeded) == 1, (cancel, complete)
        assert job.status == succeeded[0].to_status
        assert job.events.filter(to_status__in=FINAL_STATUSES).count() == 1
        loser = cancel if complete is succeeded[0] else complete
        assert loser.error_code in {"JOB_NOT_CANCELLABLE", "ILLEGAL_TRANSITION"}
        if job.status == S.CANCELLED:
            assert job.result_data is None and job.cancelled_at is not None
        winners.add(job.status)
    assert winners <= {S.CANCELLED, S.COMPLETED}


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_claiming_the_same_job_start_it_once():
    personas = Personas()
    for _ in range(ROUNDS):
        job = AIJobFactory(brand=personas.brand_a)

        outcomes = run_together(*[lambda pk=job.pk: services.job_start(job_pk=pk)] * 2)

        assert sum(not isinstance(o, ApplicationError) for o in outcomes) == 1
        job.refresh_from_db()
        assert job.attempts == 1 and job.events.filter(to_status=S.RUNNING).count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_the_same_idempotency_key_create_one_job():
    personas = Personas()
    body = {"job_type": "chat_completion", "input_data": input_for("chat_completion")}

    def submit():
        response = make_client(personas.alice, personas.brand_a).post(
            "/ai/jobs/", body, format="json", HTTP_IDEMPOTENCY_KEY="same-key"
        )
        return response.status_code, response.json()["job_id"]

    from ai_core.tests.factories import AIJobTypeFactory

    AIJobTypeFactory(name="chat_completion")  # a transactional test's flush removed the migration's rows
    outcomes = run_together(*[submit] * 6)

    assert sorted(code for code, _ in outcomes) == [200] * 5 + [201]
    assert len({job_id for _, job_id in outcomes}) == 1
    assert AIJob.objects.count() == 1


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_compactions_racing_each_other_and_new_writes_keep_every_sum():
    """Three compactions at once while jobs are created, started and finished: no delta is lost or counted
    twice (a row two DELETEs race for is folded by the one that removed it)."""
    from ai_core.tests.test_workflow import rollup_matches_rows
    from ai_core.workflow import stats_compact

    personas = Personas()
    for _ in range(4):
        for job in [AIJobFactory(brand=personas.brand_a, created_by=personas.alice) for _ in range(6)]:
            services.job_start(job_pk=job.pk)

        def churn():
            job = AIJobFactory(brand=personas.brand_a, created_by=personas.alice)
            started = services.job_start(job_pk=job.pk)
            return services.job_complete(job_pk=job.pk, attempt=started.attempt, result_data={"text": "ok"})

        outcomes = run_together(stats_compact, stats_compact, stats_compact, churn, churn)

        assert all(not isinstance(o, ApplicationError) for o in outcomes), outcomes
        rollup_matches_rows()
    stats_compact()
    rollup_matches_rows()
