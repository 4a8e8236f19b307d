"""The engine's parts in this process: retry policy, handlers, provider seam, fair claim, runner, repairs."""

import random
import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ai_core.engine import handlers
from ai_core.engine.claim import claim_next
from ai_core.engine.retry import RetryPolicy
from ai_core.engine.runner import claim_job, execute, run_from_message
from ai_core.engine.upkeep import TRICKLE, reap, sweep
from ai_core.engine.watch import Attempt, beat, stop_the_gone
from ai_core.models import AIJob, AIJobType
from ai_core.services import job_cancel, job_complete, job_progress, job_start, job_type_by_pk
from ai_core.workflow import IllegalTransition, StaleAttempt
from ai_providers.clients.base import ChatRequest, PermanentProviderError
from ai_providers.services import client_for_model
from business.errors import ApplicationError
from config.celery_app import app
from testing.jobs import event_trail, submit

NO_WAIT = RetryPolicy(base_seconds=0)


# --- retry policy -------------------------------------------------------------------------------------


def test_backoff_grows_exponentially_with_jitter_and_a_ceiling():
    policy = RetryPolicy(base_seconds=1, factor=2, max_seconds=10, rng=random.Random(7))
    assert [policy.step(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    for attempt in range(1, 7):
        delays = {policy.delay(attempt) for _ in range(50)}
        step = policy.step(attempt)
        assert all(step / 2 <= d <= step for d in delays)
        assert len(delays) > 1  # jittered: a burst of failures does not come back in lockstep
    assert policy.should_retry(attempt=2, max_attempts=3)
    assert not policy.should_retry(attempt=3, max_attempts=3)


# --- handlers and the provider seam -------------------------------------------------------------------


def test_each_default_job_type_maps_its_input_to_a_chat_request(job_types, make_brands):
    (brand,) = make_brands(1)
    chat = AIJob(
        job_type=AIJobType.objects.get(name="chat_completion"),
        brand=brand,
        input_data={
            "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
            "model": "echo-x",
            "max_tokens": 5,
            "temperature": 0.2,
            "echo": {"delay_ms": 3},
        },
    )
    request = handlers.build_request(chat)
    assert request.model == "echo-x" and request.max_tokens == 5 and request.temperature == 0.2
    assert request.messages[-1] == {"role": "user", "content": "hi"}
    assert request.options == {"echo": {"delay_ms": 3}}

    text = AIJob(job_type=AIJobType.objects.get(name="text_generation"), brand=brand, input_data={"prompt": "write"})
    request = handlers.build_request(text)
    assert request.messages == [{"role": "user", "content": "write"}]
    assert request.model == AIJobType.objects.get(name="text_generation").default_model

    analysis = AIJob(
        job_type=AIJobType.objects.get(name="content_analysis"),
        brand=brand,
        input_data={"content": "some text", "analysis_type": "sentiment"},
    )
    request = handlers.build_request(analysis)
    assert [m["role"] for m in request.messages] == ["system", "user"]
    assert "sentiment" in request.messages[0]["content"] and request.messages[1]["content"] == "some text"


def test_a_type_without_handler_is_a_permanent_error(job_types, make_brands):
    (brand,) = make_brands(1)
    job_type = AIJobType.objects.create(name="no_such_handler", category="analysis")
    with pytest.raises(PermanentProviderError) as err:
        handlers.build_request(AIJob(job_type=job_type, brand=brand, input_data={}))
    assert err.value.error_code == "NO_HANDLER"


@pytest.mark.django_db
def test_echo_models_resolve_to_the_echo_client_and_unknown_models_fail_permanently():
    assert client_for_model("echo-1").name == "echo"  # through the catalogue (ai_providers)
    with pytest.raises(PermanentProviderError) as err:
        client_for_model("llama-nonexistent")
    assert err.value.error_code == "MODEL_NOT_SUPPORTED"


# --- the claim: priority, fairness, compare-and-set ---------------------------------------------------


def test_claiming_a_given_job_reads_it_in_the_same_statement_on_postgresql(job_types, make_brands):
    (brand,) = make_brands(1)
    job = submit(brand)
    job_type_by_pk(job.job_type_id)  # the per-process memo, read once

    with CaptureQueriesContext(connection) as queries:
        attempt, claimed = claim_job(job.pk, task_id="gateway:t")

    assert attempt == 1
    assert [to for _, to, _ in event_trail(job.pk)] == ["pending", "running"]  # the workflow's compare-and-set
    with pytest.raises(IllegalTransition):  # a second claim of the same job is refused
        claim_job(job.pk, task_id="gateway:u")
    if connection.vendor != "postgresql":
        assert claimed is None  # execute reads it
        return
    on_the_job = [q["sql"] for q in queries.captured_queries if re.search(r"\bai_core_aijob\b", q["sql"])]
    assert len(on_the_job) == 1  # the claim itself: the job is not read again
    assert (claimed.pk, claimed.status, claimed.attempts, claimed.task_id) == (job.pk, "running", 1, "gateway:t")
    assert claimed.company_id == brand.company_id and claimed.holds_quota_reservation is False


def test_claims_follow_priority_urgent_first(job_types, make_brands):
    (brand,) = make_brands(1)
    jobs = {p: submit(brand, priority=p) for p in ["low", "normal", "high", "urgent"]}
    claimed = [claim_next().job_pk for _ in range(4)]
    assert claimed == [jobs[p].pk for p in ["urgent", "high", "normal", "low"]]
    assert claim_next() is None


def test_a_brand_with_a_backlog_does_not_starve_a_single_job_of_another_brand(job_types, make_brands):
    busy, quiet = make_brands(2)
    backlog = [submit(busy) for _ in range(30)]
    single = submit(quiet)
    first_two = {claim_next().job_pk for _ in range(2)}
    assert single.pk in first_two
    rest = [claim_next().job_pk for _ in range(29)]
    assert rest == sorted(rest) and set(rest) | first_two == {j.pk for j in backlog} | {single.pk}  # oldest first


def test_cancelled_or_not_yet_available_jobs_are_never_claimed(job_types, make_brands):
    (brand,) = make_brands(1)
    cancelled = submit(brand)
    job_cancel(job_pk=cancelled.pk)
    later = submit(brand)
    AIJob.objects.filter(pk=later.pk).update(available_at=timezone.now() + timedelta(minutes=5))
    assert claim_next() is None
    assert AIJob.objects.get(pk=cancelled.pk).attempts == 0


# --- the runner, in this process ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_job_runs_to_completion_with_progress_and_one_event_sequence(job_types, make_brands):
    (brand,) = make_brands(1)
    job = submit(brand, echo={"delay_ms": 1200, "chunks": 4}, job_type="text_generation")
    assert run_from_message(job.pk, task_id="t-1") == "completed"
    job.refresh_from_db()
    assert job.status == "completed" and job.progress_percentage == 100 and job.attempts == 1
    assert job.result_data == {
        "completion": "Echo: hello",
        "finish_reason": "stop",
        "model": "echo-1",
        "request_id": None,
    }
    assert job.task_id == "t-1"
    assert event_trail(job.pk) == [("", "pending", 0), ("pending", "running", 1), ("running", "completed", 1)]
    assert run_from_message(job.pk) is None  # a second delivery finds nothing to do


@pytest.mark.django_db(transaction=True)
def test_transient_errors_are_retried_until_success(job_types, make_brands):
    (brand,) = make_brands(1)
    job = submit(brand, echo={"fail": "transient", "fail_times": 2})
    assert run_from_message(job.pk, policy=NO_WAIT) == "pending"
    assert run_from_message(job.pk, policy=NO_WAIT) == "pending"
    assert run_from_message(job.pk, policy=NO_WAIT) == "completed"
    job.refresh_from_db()
    assert job.attempts == 3 and job.status == "completed"
    assert [e[1] for e in event_trail(job.pk)] == [
        "pending",
        "running",
        "pending",
        "running",
        "pending",
        "running",
        "completed",
    ]


@pytest.mark.django_db(transaction=True)
def test_a_retry_waits_for_its_backoff(job_types, make_brands):
    (brand,) = make_brands(1)
    job = submit(brand, echo={"fail": "transient", "fail_times": 1})
    assert run_from_message(job.pk, policy=RetryPolicy(base_seconds=600, max_seconds=600)) == "pending"
    job.refresh_from_db()
    assert job.available_at > timezone.now() + timedelta(minutes=4)
    assert run_from_message(job.pk) is None


@pytest.mark.django_db(transaction=True)
def test_transient_errors_fail_the_job_once_attempts_run_out(job_types, make_brands):
    (brand,) = make_brands(1)
    job = submit(brand, echo={"fail": "transient"})
    outcomes = [run_from_message(job.pk, policy=NO_WAIT) for _ in range(4)]
    assert outcomes == ["pending", "pending", "failed", None]
    job.refresh_from_db()
    assert job.attempts == 3 and job.error_code == "ECHO_TRANSIENT"
    assert "echo: transient failure requested" in job.error_message


@pytest.mark.django_db(transaction=True)
def test_permanent_errors_fail_at_once_with_the_providers_message(job_types, make_brands):
    (brand,) = make_brands(1)
    job = submit(brand, echo={"fail": "permanent"})
    with pytest.raises(ApplicationError) as refused:  # the catalogue refuses unknown models at submit …
        submit(brand, model="nobody-serves-this")
    assert refused.value.error_code == "MODEL_NOT_SUPPORTED"
    unknown_model = submit(brand)  # … and a model that left the catalogue since fails at once in the runner
    AIJob.objects.filter(pk=unknown_model.pk).update(
        input_data={**unknown_model.input_data, "model": "nobody-serves-this"}
    )
    assert run_from_message(job.pk) == "failed"
    assert run_from_message(unknown_model.pk) == "failed"
    job.refresh_from_db()
    unknown_model.refresh_from_db()
    assert (job.attempts, job.error_code, job.error_message) == (
        1,
        "ECHO_PERMANENT",
        "echo: permanent failure requested",
    )
    assert unknown_model.error_code == "MODEL_NOT_SUPPORTED" and unknown_model.attempts == 1


@pytest.mark.django_db(transaction=True)
def test_a_job_past_its_type_timeout_ends_as_timeout(job_types, make_brands):
    (brand,) = make_brands(1)
    AIJobType.objects.filter(name="chat_completion").update(timeout_seconds=1)
    job = submit(brand, echo={"delay_ms": 60_000, "chunks": 10})
    assert run_from_message(job.pk) == "timeout"
    job.refresh_from_db()
    assert job.status == "timeout" and job.error_code == "JOB_TIMEOUT" and job.attempts == 1


@pytest.mark.django_db(transaction=True)
def test_new_job_types_plug_in_through_the_registry(job_types, make_brands):
    (brand,) = make_brands(1)
    AIJobType.objects.create(name="shout", category="generation")

    @handlers.register("shout")
    def shout(job):
        return ChatRequest(model="echo-1", messages=[{"role": "user", "content": job.input_data["text"].upper()}])

    from ai_core.services import job_create

    job, _ = job_create(brand=brand, user=None, job_type="shout", input_data={"text": "hey"})
    assert run_from_message(job.pk) == "completed"
    job.refresh_from_db()
    assert job.result_data["completion"] == "Echo: HEY"


# --- heartbeat, cancel watcher, reaper, sweeper, fencing ------------------------------------------------


def test_the_watcher_stops_cancelled_attempts_and_beats_only_current_ones(job_types, make_brands):
    (brand,) = make_brands(1)
    running, cancelled = submit(brand), submit(brand)
    a = job_start(job_pk=running.pk)
    b = job_start(job_pk=cancelled.pk)
    job_cancel(job_pk=cancelled.pk)
    past = timezone.now() - timedelta(minutes=1)
    AIJob.objects.filter(pk=running.pk).update(heartbeat_at=past)
    current = Attempt(job_pk=running.pk, attempt=a.attempt, deadline=float("inf"))
    zombie = Attempt(job_pk=running.pk, attempt=a.attempt - 1, deadline=float("inf"))
    gone = Attempt(job_pk=cancelled.pk, attempt=b.attempt, deadline=float("inf"))
    stop_the_gone([current, zombie, gone])
    assert not current.stop.is_set()
    assert (zombie.stop_reason, gone.stop_reason) == ("superseded", "cancelled")
    zombie.report(90)
    beat([zombie])
    row = AIJob.objects.get(pk=running.pk)
    assert (row.heartbeat_at, row.progress_percentage) == (past, 0)  # a zombie keeps nothing alive, writes nothing
    beat([current])  # nothing reported yet: a heartbeat only, progress and updated_at untouched
    row = AIJob.objects.get(pk=running.pk)
    assert (row.heartbeat_at > past, row.progress_percentage) == (True, 0)
    current.report(40)
    beat([current])
    moved = AIJob.objects.get(pk=running.pk)
    assert (moved.progress_percentage, current.progress_written) == (40, 40)
    assert moved.updated_at > row.updated_at


def test_the_reaper_requeues_then_fails_silent_jobs_and_times_out_overdue_ones(job_types, make_brands):
    (brand,) = make_brands(1)
    silent, last_try, overdue, healthy = (submit(brand) for _ in range(4))
    for job in (silent, last_try, overdue, healthy):
        job_start(job_pk=job.pk)
    AIJob.objects.filter(pk=last_try.pk).update(attempts=3)
    long_ago = timezone.now() - timedelta(hours=1)
    AIJob.objects.filter(pk__in=[silent.pk, last_try.pk]).update(heartbeat_at=long_ago)
    AIJob.objects.filter(pk=overdue.pk).update(started_at=long_ago)  # still beating, but way past 60 s

    assert reap() == {"requeued": 1, "failed": 1, "timeout": 1}
    statuses = dict(AIJob.objects.values_list("pk", "status"))
    assert statuses == {
        silent.pk: "pending",
        last_try.pk: "failed",
        overdue.pk: "timeout",
        healthy.pk: "running",
    }
    assert AIJob.objects.get(pk=last_try.pk).error_code == "WORKER_LOST"
    assert reap() == {"requeued": 0, "failed": 0, "timeout": 0}

    # The lost worker comes back to life: its late writes are fenced off by the attempt number.
    second = claim_next()
    assert (second.job_pk, second.attempt) == (silent.pk, 2)
    assert not job_progress(job_pk=silent.pk, attempt=1, percentage=50)
    with pytest.raises(StaleAttempt):
        job_complete(job_pk=silent.pk, attempt=1, result_data={"completion": "late"})
    assert AIJob.objects.get(pk=silent.pk).result_data is None


def test_the_sweeper_redispatches_pending_jobs_whose_wake_up_was_lost(job_types, make_brands):
    (brand,) = make_brands(1)
    forgotten, fresh = submit(brand), submit(brand)
    AIJob.objects.filter(pk=forgotten.pk).update(available_at=timezone.now() - timedelta(minutes=10))
    assert sweep() == 1
    assert AIJob.objects.get(pk=forgotten.pk).available_at > timezone.now() - timedelta(minutes=1)
    assert sweep() == 0  # re-published at most once per period
    assert AIJob.objects.get(pk=fresh.pk).available_at < timezone.now()


def test_while_jobs_run_the_sweeper_only_trickles_wake_ups_into_a_backlog(job_types, make_brands):
    (brand,) = make_brands(1)
    backlog = [submit(brand) for _ in range(TRICKLE + 5)]
    job_start(job_pk=backlog.pop().pk)
    AIJob.objects.filter(status="pending").update(available_at=timezone.now() - timedelta(minutes=10))
    assert sweep() == TRICKLE


# --- settings -----------------------------------------------------------------------------------------


def test_messages_are_acked_late_one_at_a_time_and_redis_keeps_no_unacked_copy():
    """Redis without ack emulation: its restore through a closed connection killed workers (broker outage)."""
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    if settings.CELERY_BROKER_URL.startswith("redis"):
        assert app.conf.broker_transport_options["ack_emulation"] is False


def test_the_redis_channel_shares_one_client_per_pool_and_a_new_pool_gets_a_new_one():
    """config.broker: kombu would build a Redis client per publish and per ack; ours keeps one per pool."""
    from kombu import Connection

    from config.broker import RedisTransport

    redis_url = settings.CELERY_BROKER_URL
    if not redis_url.startswith("redis://"):
        pytest.skip("needs the Redis broker (the PostgreSQL pass)")
    with Connection(redis_url, transport=RedisTransport) as conn:
        channel = conn.default_channel
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second and first.connection_pool is channel.pool
            assert first.ping()
        channel._disconnect_pools()  # what a fork or a reconnect does
        with channel.conn_or_acquire() as third:
            assert third is not first and third.connection_pool is channel.pool
            assert third.ping()


def test_execute_refuses_nothing_silently_for_a_missing_job(db):
    with pytest.raises(AIJob.DoesNotExist):
        execute(10**9, 1)


@pytest.mark.django_db(transaction=True)
def test_final_writes_of_runner_and_reaper_tell_accounting_apps_in_the_same_transaction(job_types, make_brands):
    """An extension that asks for a transaction (hooks: needs_transaction) hears each end in it (on_final)."""
    from django.db import connection as conn

    from ai_core.hooks import hooks

    (brand,) = make_brands(1)
    heard = []

    def on_final(finals):
        for f in finals:
            completion = (f.result_data or {}).get("completion")
            heard.append((f.job_pk, f.attempt, f.to, completion, f.error_code, conn.in_atomic_block))
        return []

    def needs_transaction(finals):
        return True

    hooks.register(on_final=on_final, needs_transaction=needs_transaction)
    try:
        done = submit(brand)
        run_from_message(done.pk)
        lost = submit(brand)
        job_start(job_pk=lost.pk)
        AIJob.objects.filter(pk=lost.pk).update(attempts=3, heartbeat_at=timezone.now() - timedelta(hours=1))
        reap()
    finally:
        hooks.unregister(on_final=on_final, needs_transaction=needs_transaction)
    assert heard == [
        (done.pk, 1, "completed", "Echo: hello", "", True),
        (lost.pk, 3, "failed", None, "WORKER_LOST", True),
    ]
