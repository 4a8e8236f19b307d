"""One attempt of one job: claim, build the request, call the provider, write the outcome.

Every write of the attempt is fenced by its attempt number, so a zombie (a worker the reaper gave up on)
cannot overwrite what the next attempt or a cancel wrote: its late writes raise StaleAttempt /
IllegalTransition and are discarded.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from ai_core.dispatch import publish_job
from ai_core.engine import circuit, claim, fallback, finish, handlers
from ai_core.engine.claim import claim_next
from ai_core.engine.finish import Discarded
from ai_core.engine.retry import RetryPolicy, default_policy
from ai_core.engine.watch import Attempt, in_flight
from ai_core.models import AIJob, JobStatus
from ai_core.services import job_requeue, job_start, job_type_by_pk, job_wait_for_capacity
from ai_core.statements import JobRead, job_row
from ai_core.workflow import Transitioned
from ai_providers import capacity
from ai_providers.clients.base import (
    CallAbandoned,
    ChatRequest,
    ChatResult,
    ProviderError,
    TokenCallback,
    TransientProviderError,
)
from ai_providers.services import CatalogueBound, client_for_model
from kernel.logs import bind_log_context, reset_log_context

logger = logging.getLogger(__name__)


def run_wake_up(job_pk: int, *, task_id: str = "") -> str | None:
    """What a wake-up message does on the threads executor: run the best claimable job (run_from_message), then
    the next, until none is claimable, AICORE_WAKE_UP_MAX_JOBS ran, AICORE_WAKE_UP_MAX_SECONDS passed or the
    worker is shutting down (a warm shutdown stops it between jobs). The jobs of one transaction share a few
    wake-ups (dispatch.publish_jobs): each one woken drains the queue with the others. Stopped while jobs may
    remain, it hands on one wake-up, so a long queue never waits for the sweeper.

    A job its attempt left pending ends the wake-up too, handing on nothing: a job waiting for provider
    capacity is claimable at once and would be claimed (and refused) again and again; its wake-ups come with
    free slots (the pacer), a retry's after its backoff, a fallback's at once, and they go on with the queue.

    Returns the status the last attempt left its job in, None when there was nothing to claim."""
    started, last = time.monotonic(), None
    for _ in range(settings.AICORE_WAKE_UP_MAX_JOBS):
        ran = _run_next(task_id, None)
        if ran is NOTHING_CLAIMED:
            return last
        last = ran
        if ran == JobStatus.PENDING:
            return last
        if shutting_down.is_set() or time.monotonic() - started >= settings.AICORE_WAKE_UP_MAX_SECONDS:
            break
    hand_on_wake_up()
    return last


def run_from_message(job_pk: int, *, task_id: str = "", policy: RetryPolicy | None = None) -> str | None:
    """Claim the best pending job (not necessarily `job_pk`) and run it: one job of a wake-up (run_wake_up).

    Returns the status the attempt left the job in, or None when there was nothing to claim (a duplicate
    delivery, a job cancelled while pending, a job another worker took).
    """
    ran = _run_next(task_id, policy)
    return None if ran is NOTHING_CLAIMED else ran


def hand_on_wake_up() -> None:
    """One wake-up for any worker, claiming the best job: a woken worker that stops with work left hands on."""
    publish_job(0)


NOTHING_CLAIMED = "nothing claimed"
shutting_down = threading.Event()  # set by a warm shutdown (engine.worker): wake-ups start no further job


def _run_next(task_id: str, policy: RetryPolicy | None) -> str | None:
    claimed = claim_next(task_id=task_id, also_return=CLAIMED.sql)
    if claimed is None:
        return NOTHING_CLAIMED
    job = _job_from(CLAIMED, claimed.extra) if claimed.extra else None
    return execute(claimed.job_pk, claimed.attempt, policy=policy, job=job)


def claimed_job(claimed: Transitioned) -> AIJob:
    """The job a claim (claim_next with also_return=CLAIMED.sql) took, as an attempt needs it: from the claim
    statement's own row on PostgreSQL, else read."""
    return _job_from(CLAIMED, claimed.extra) if claimed.extra else _load(claimed.job_pk)


def claim_job(job_pk: int, *, task_id: str) -> tuple[int, AIJob | None]:
    """Claim one given pending job (pending → running, the workflow's compare-and-set) for an attempt run here.

    Returns (attempt, job): on PostgreSQL the claim statement also returns the job as `execute` needs it (no
    second read); elsewhere the job is None and `execute` reads it. Raises what job_start raises.
    """
    started = job_start(job_pk=job_pk, task_id=task_id, also_return=CLAIMED.sql)
    return started.attempt, _job_from(CLAIMED, started.extra) if started.extra else None


def created_claimed(job: AIJob) -> AIJob:
    """A job job_create made already claimed (`claimed_by`), ready for `execute` as the claim's would be."""
    job.company_id = job.brand.company_id
    return job


def execute(
    job_pk: int,
    attempt_number: int,
    *,
    policy: RetryPolicy | None = None,
    job: AIJob | None = None,
    on_token: TokenCallback | None = None,
    stop_when: Callable[[], bool] | None = None,
    whole: bool = False,
    on_completed: Callable[[ChatResult], None] | None = None,
    capacity_wait: Callable[[capacity.CapacityWait, Callable[[], bool]], bool] | None = None,
) -> str | None:
    """Run attempt `attempt_number` of a claimed job (`job`: as the claim returned it, else read here).

    The gateway runs its calls through here too, in the API process: `on_token` receives the streamed text,
    `stop_when` stops the call from the caller's side (its client hung up). `whole`: ask the provider for the
    whole answer at once (a caller that waits for all of it anyway): no stream to parse, no progress, and a
    cancel stops the call only when it returns (its writes are fenced like any late attempt's). `on_completed`
    receives the result this attempt completed the job with (the caller answers from it without reading the
    row back). `capacity_wait`: a caller that holds its client's request open (the gateway) waits for refused
    provider capacity in its own thread: called with the refusal, it sleeps and returns True to ask again, or
    False, and the job ends timeout (CAPACITY_WAIT_EXCEEDED); without it, the job goes back to wait in the queue.
    While `capacity_wait` sleeps the attempt is not watched: the caller may show its job waiting meanwhile
    (running -> pending) provided it claims it again, on the same attempt number, before it returns.
    """
    if job is None:
        job = _load(job_pk)
    log_token = bind_attempt_log(job, attempt_number)
    call = Call(job=job, attempt=new_attempt(job, attempt_number), policy=policy)
    in_flight.add(call.attempt)
    try:
        try:
            ended = begin(call, on_token=on_token, whole=whole, stop_when=stop_when)
            if ended is not NOT_ENDED:
                return ended
            result = _leased_call(call.client, call.request, call.attempt, job, call.should_stop, capacity_wait)
        except Exception as exc:
            return after_failure(call, exc, capacity_wait=capacity_wait)
        circuit.record_success(call.provider)
        if call.attempt.should_stop():
            return abandoned(call.attempt)
        status = finish.complete(call.attempt.job_pk, call.attempt.attempt, result, job=job)
        if status == JobStatus.COMPLETED and on_completed is not None:
            on_completed(result)
        return status
    finally:
        in_flight.remove(call.attempt)
        connection.close()
        reset_log_context(log_token)


# --- the decisions of an attempt, shared by this thread path and the asyncio executor (engine.aio) -----------

NOT_ENDED = "not ended"  # begin(): the call is to be made


@dataclass(eq=False)
class Call:
    """One attempt's call as the decisions see it: the job, its attempt, and what begin() found."""

    job: AIJob
    attempt: Attempt
    policy: RetryPolicy | None = None
    provider: str = ""  # known once the model's client is: whose circuit the call's outcome counts on
    request: ChatRequest | None = None
    client: CatalogueBound | None = None
    should_stop: Callable[[], bool] | None = None


def bind_attempt_log(job: AIJob, attempt_number: int):
    """Every log line of this attempt (ours, the provider SDK's) carries the job, brand and attempt (the
    current thread's or task's context); returns the token that undoes it."""
    return bind_log_context(job_id=job.job_id, brand=job.brand_id, attempt=attempt_number)


def unbind_attempt_log(token) -> None:
    reset_log_context(token)


def _timeout_of(job: AIJob) -> int:
    """An attempt's time limit: the job type's timeout, at most AICORE_MAX_JOB_SECONDS."""
    return min(job.job_type.timeout_seconds, settings.AICORE_MAX_JOB_SECONDS)


def new_attempt(job: AIJob, attempt_number: int, kind: type[Attempt] = Attempt) -> Attempt:
    """The attempt's fence, deadline (_timeout_of) and stop flag."""
    timeout = _timeout_of(job)
    return kind(job_pk=job.pk, attempt=attempt_number, deadline=time.monotonic() + timeout)


def begin(
    call: Call,
    *,
    on_token: TokenCallback | None = None,
    whole: bool = False,
    stop_when: Callable[[], bool] | None = None,
) -> str | None:
    """Build the request and find the model's client (call.request, call.client, call.provider), or end the
    attempt at once: a switch to a fallback past the provider's open circuit. Returns NOT_ENDED when the call is
    to be made, else the status the attempt left the job in. Raises what after_failure() decides on."""
    job, attempt = call.job, call.attempt
    request = handlers.build_request(job)
    request.attempt = attempt.attempt
    request.timeout_seconds = float(_timeout_of(job))
    request.on_token = on_token
    if whole:
        request.stream = False
    call.should_stop = attempt.should_stop
    if stop_when is not None:
        call.should_stop = lambda: stop_when() or attempt.should_stop()  # noqa: E731
    call.request = request
    call.client = client_for_model(request.model, job.company_id)
    call.provider = call.client.choice.provider.name
    skip_to = fallback.past_open_circuit(job, call.provider)
    if skip_to is not None:
        return fallback.switch(job, attempt.attempt, skip_to, reason=f"the {call.provider} circuit is open")
    return NOT_ENDED


def after_failure(call: Call, exc: Exception, *, capacity_wait=None) -> str | None:
    """What a failed or stopped call leaves the job in: ended (timeout), waiting for capacity, switched to a
    fallback, re-queued for another attempt, or failed; None when a cancel or a newer attempt already ended it."""
    attempt, job, provider = call.attempt, call.job, call.provider
    policy = call.policy or default_policy()
    if isinstance(exc, CallAbandoned):
        return abandoned(attempt)
    if isinstance(exc, capacity.CapacityWait):
        if capacity_wait is not None:  # the caller waited as long as it would
            return _capacity_timeout(attempt, f"No provider capacity within the caller's bound ({exc})")
        skip_to = fallback.past_long_wait(job, exc.until)
        if skip_to is not None:
            return fallback.switch(job, attempt.attempt, skip_to, reason=f"waiting too long for capacity ({exc})")
        return _wait_for_capacity(attempt, job, exc)
    if isinstance(exc, ProviderError):
        if provider and circuit.means_down(exc):
            circuit.record_failure(provider, exc.message)
        if isinstance(exc, TransientProviderError):
            return _retry_or_fail(attempt, job, exc.error_code, exc.message, policy, may_fall_back=True)
        return finish.fail(attempt.job_pk, attempt.attempt, exc.error_code, exc.message)
    # A bug or a broken dependency: retried like a transient error, then failed.
    logger.error("job %s attempt %s crashed", attempt.job_pk, attempt.attempt, exc_info=exc)
    return _retry_or_fail(attempt, job, "ENGINE_ERROR", f"{type(exc).__name__}: {exc}", policy)


def capacity_lease(call: Call) -> capacity.Lease:
    """The call's lease on its endpoint's capacity (raises CapacityWait: after_failure decides)."""
    return _capacity_for(call.client, call.request, call.attempt, call.job)


def release(
    lease: capacity.Lease, attempt: Attempt, result: ChatResult | None, exc: BaseException | None
) -> BaseException | None:
    """The lease given back with what the answer (or the error) said of the limits; returns what the call's
    error becomes (a 429 that happened anyway: a CapacityWait, not an error), None after a result."""
    if result is not None:
        _release(lease, attempt, tokens=result.input_tokens + result.output_tokens, headers=result.headers, status=200)
        return None
    if isinstance(exc, ProviderError):
        _release(lease, attempt, tokens=None, headers=exc.headers, status=exc.status_code)
        if exc.error_code == "PROVIDER_RATE_LIMITED":
            return capacity.after_rate_limit(lease.key, exc.headers)
        return exc
    _release(lease, attempt, tokens=None, headers={}, status=None)
    return exc


# The job as an attempt reads it: its columns, its brand's company, and the extensions' probes (hooks.probes:
# whether it has an OpenAI row, whether it holds a quota reservation), so its end need not look.
JOB_READ = JobRead("j")
# On PostgreSQL the claim statement returns the same, read from the row it claimed (workflow: `moved`).
CLAIMED = JobRead("moved")


def _load(job_pk: int) -> AIJob:
    """The job as an attempt needs it, in one plain statement (where the claim did not return it)."""
    row = job_row(JOB_READ, job_pk)
    if row is None:
        raise AIJob.DoesNotExist(f"Job {job_pk} does not exist")
    return _job_from(JOB_READ, row)


def _job_from(read: JobRead, row: tuple) -> AIJob:
    """The job out of a row read through `read`; the job type from the per-process memo."""
    job = read.job(row)
    job.job_type = job_type_by_pk(job.job_type_id)
    return job


def _capacity_for(client, request, attempt: Attempt, job: AIJob) -> capacity.Lease:
    """A lease on the endpoint's capacity for this call (raises CapacityWait), held where the watcher renews it.
    The wake-ups it scheduled for waiting jobs go out at once: they only wake workers."""
    lease = capacity.acquire(client.capacity_key, holder=_holder(job, attempt), tokens=client.tokens_at_most(request))
    attempt.capacity_lease = lease.lease_id
    _publish_wakes(lease.wakes, job)
    return lease


def capacity_leases(calls: list[Call]) -> list[capacity.Lease | capacity.CapacityWait]:
    """capacity_lease for calls to one endpoint (one capacity key), under one lock (capacity.acquire_many): a
    lease each, or the CapacityWait to hand to after_failure (which publishes its wake-ups)."""
    results = capacity.acquire_many(
        calls[0].client.capacity_key,
        [(_holder(call.job, call.attempt), call.client.tokens_at_most(call.request)) for call in calls],
    )
    for call, result in zip(calls, results, strict=True):
        if isinstance(result, capacity.Lease):
            call.attempt.capacity_lease = result.lease_id
            _publish_wakes(result.wakes, call.job)
    return results


def _holder(job: AIJob, attempt: Attempt) -> str:
    return f"job {job.job_id} attempt {attempt.attempt}"


def _leased_call(client, request, attempt: Attempt, job: AIJob, should_stop, capacity_wait) -> ChatResult:
    """The provider call under a capacity lease; refused (CapacityWait), asked again for as long as
    `capacity_wait` (see execute) waits, else the refusal goes up."""
    while True:
        try:
            lease = _capacity_for(client, request, attempt, job)
            # Provider calls never run inside a transaction nor hold a connection: they wait on the network
            # for seconds, and the pooled connection serves other threads meanwhile.
            connection.close()
            return _call_under_lease(client, request, lease, attempt, should_stop)
        except capacity.CapacityWait as wait:
            if capacity_wait is None:
                raise
            _publish_wakes(wait.wakes, job)  # the jobs waiting in the queue get their wake-ups all the same
            connection.close()  # no connection held while we sleep
            # gateway: the caller shows its job waiting (running -> pending) while it sleeps and claims it again
            # (the same attempt number) before it returns: the watcher would take that for a supersession.
            in_flight.remove(attempt)
            try:
                again = capacity_wait(wait, should_stop)
            finally:
                in_flight.add(attempt)
            if not again:
                raise
            if should_stop():
                raise CallAbandoned() from None


def _call_under_lease(client, request, lease: capacity.Lease, attempt: Attempt, should_stop) -> ChatResult:
    """The provider call, then the lease given back (release)."""
    try:
        # Progress is only noted here: the watcher writes it with its next round (watch.py).
        result = client.chat(request, on_progress=attempt.report, should_stop=should_stop)
    except BaseException as exc:
        raised = release(lease, attempt, None, exc)
        if raised is exc:
            raise
        raise raised from exc
    release(lease, attempt, result, None)
    return result


def _release(lease: capacity.Lease, attempt: Attempt, **answer) -> None:
    attempt.capacity_lease = None
    try:
        capacity.release(lease, **answer)
    except Exception:  # the database briefly away: the lease expires on its own, the outcome matters more
        logger.warning("could not release capacity lease %s", lease.lease_id, exc_info=True)


def _wait_for_capacity(attempt: Attempt, job: AIJob, wait: capacity.CapacityWait) -> str | None:
    """No capacity for the call (or the provider answered 429): the job goes back to pending, shown waiting until
    `wait.until`, its attempt given back and no thread held; past the type's max_queue_seconds it ends timeout
    instead."""
    deadline = job.created_at + timedelta(seconds=job.job_type.max_queue_seconds)
    if wait.until > deadline:
        return _capacity_timeout(
            attempt, f"Waited for provider capacity past the job type's max_queue_seconds ({wait})"
        )
    claim.rotation.not_served(job.priority, job.brand_id)
    try:
        job_wait_for_capacity(
            job_pk=attempt.job_pk, attempt=attempt.attempt, waiting=wait.as_waiting(), claimable_at=wait.claimable_at
        )
    except Discarded:
        return None
    _publish_wakes(wait.wakes, job)
    return JobStatus.PENDING


def _capacity_timeout(attempt: Attempt, message: str) -> str | None:
    return finish.timeout(attempt.job_pk, attempt.attempt, error_code="CAPACITY_WAIT_EXCEEDED", message=message)


def _publish_wakes(wakes: list, job: AIJob) -> None:
    """Wake-ups at the times the capacity pacer chose (each claims the best pending job, not this one)."""
    now = timezone.now()
    for at in wakes:
        publish_job(job.pk, priority=job.priority, countdown=max(0.0, (at - now).total_seconds()) or None)


def abandoned(attempt: Attempt) -> str | None:
    """The call stopped early: on timeout we end the job; on cancel or supersession others already did."""
    if attempt.stop_reason == "timeout":
        return finish.timeout(attempt.job_pk, attempt.attempt)
    return None


def _retry_or_fail(
    attempt: Attempt, job: AIJob, error_code: str, message: str, policy: RetryPolicy, *, may_fall_back: bool = False
) -> str | None:
    """Another attempt after a backoff while the current model has attempts left; then the job's next fallback
    model (`may_fall_back`: a provider's error, not ours), else the end: failed."""
    on_model = job.attempts_on_current_model(attempt.attempt)
    if not policy.should_retry(attempt=on_model, max_attempts=job.job_type.max_attempts):
        choice = fallback.next_fallback(job) if may_fall_back and policy.may_run_again() else None
        if choice is not None:
            reason = f"{error_code} after {on_model} attempts on {job.current_model()}"
            return fallback.switch(job, attempt.attempt, choice, reason=reason)
        return finish.fail(attempt.job_pk, attempt.attempt, error_code, f"{message} (after {attempt.attempt} attempts)")
    delay = policy.delay(on_model)
    try:
        job_requeue(
            job_pk=attempt.job_pk,
            attempt=attempt.attempt,
            reason=f"{error_code}: {message}",
            delay_seconds=delay,
        )
    except Discarded:
        return None
    publish_job(attempt.job_pk, priority=job.priority, countdown=delay)
    return JobStatus.PENDING
