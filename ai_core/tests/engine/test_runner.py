"""ai_core.engine.runner in this process, with the handlers it builds requests with and the watcher of its running
attempts (ai_core.engine.watch): a run to completion, retries, failures, timeouts, the handler registry, heartbeat
and cancel, the final writes."""

from datetime import timedelta

import pytest
from django.utils import timezone

from ai_core.engine import handlers
from ai_core.engine.retry import RetryPolicy
from ai_core.engine.runner import execute, run_from_message
from ai_core.engine.upkeep import reap
from ai_core.engine.watch import Attempt, beat, stop_the_gone
from ai_core.models import AIJob, AIJobType
from ai_core.services import job_cancel, job_start
from ai_providers.clients.base import ChatRequest, PermanentProviderError
from ai_providers.services import client_for_model
from business.errors import ApplicationError
from testing.jobs import event_trail, submit

NO_WAIT = RetryPolicy(base_seconds=0)


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


# --- the watcher of running attempts (ai_core.engine.watch): heartbeat and cancel ---------------------


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


# --- the runner's final writes ------------------------------------------------------------------------


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
