"""Where a gateway call runs: here, in the API process, as one attempt of an ordinary job.

1. `call_open` authenticates nothing (the view did): it creates the job (reservation, OpenAIJob row, the key on
   the job) without waking a worker, claimed by this process: on PostgreSQL with no quota to reserve on, the
   creating statement writes it claimed (running, both events: ai_core.workflow.claimed_at_creation); else it
   is created pending and claimed with the workflow's compare-and-set, pending → running.
2. `call_run` runs that attempt through the engine's own `runner.execute` (fenced writes, the in-flight watcher's
   heartbeat and cancel checks, the same finish functions, usage and webhooks), outside any transaction.
3. If this process dies mid-call, the job is `running` with a stale heartbeat: the reaper re-queues it like any
   attempt whose worker died. If a worker claimed the job first (woken for another job), or the attempt ended in
   a retry, the call waits for the job's final state instead.
"""

import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from ai_core.engine.retry import default_policy
from ai_core.engine.runner import claim_job, created_claimed, execute
from ai_core.models import FINAL_STATUSES, AIJob, CompletionWindow, JobStatus
from ai_core.selectors import job_wait_final
from ai_core.services import job_cancel, job_create, job_start, job_wait_for_capacity
from ai_core.workflow import IllegalTransition
from ai_providers.clients.base import CallAbandoned
from ai_providers.clients.common import estimate_tokens
from business.errors import ApplicationError, Conflict, NotFound
from business.models import ApiKey
from gateway.errors import GatewayError
from gateway.wire import usage_body

logger = logging.getLogger(__name__)
CHAT_JOB_TYPE = "chat_completion"
EMBEDDING_JOB_TYPE = "embedding"
MAX_WAIT_SECONDS = 600
CLAIMANT = "gateway"  # its attempts' task ids: gateway:<job_id>
CAPACITY_WAIT_EXCEEDED = "CAPACITY_WAIT_EXCEEDED"
MIN_CAPACITY_SLEEP = 0.05  # seconds: a slot announced as free now is asked for again after this
STOP_CHECK_SECONDS = 0.1  # a wait for capacity notices a hang-up or a cancel this often
WAITING_GRACE_SECONDS = 60  # a job shown waiting is a worker's to claim this long past its call's bound


@dataclass
class OpenCall:
    job: AIJob
    attempt: int | None  # None: not ours to run (an idempotent replay, or a worker took it)
    hung_up: bool = False
    claimed: AIJob | None = None  # the job as the claim returned it, for the attempt (None: execute reads it)


@dataclass
class Outcome:
    result: dict
    usage: dict


def call_open(
    *, key: ApiKey, job_type: str, input_data: dict, idempotency_key: str | None, description: str
) -> OpenCall:
    try:
        job, created = job_create(
            brand=key.brand,
            user=key.created_by,
            job_type=job_type,
            input_data=input_data,
            description=description,
            idempotency_key=idempotency_key,
            openai_extension=job_type == CHAT_JOB_TYPE,
            api_key=key,
            dispatch=False,  # run here, below; the sweeper wakes a worker should we never claim it
            completion_window=CompletionWindow.NOW,  # a gateway call is answered now, whatever the type's default
            claimed_by=CLAIMANT,  # created claimed where it can be (one statement, no quota): no claim to run
        )
    except ApplicationError as exc:
        raise GatewayError.of(exc) from None
    if not created:
        return OpenCall(job=job, attempt=None)
    if job.status == JobStatus.RUNNING:
        return OpenCall(job=job, attempt=job.attempts, claimed=created_claimed(job))
    try:
        attempt, claimed = claim_job(job.pk, task_id=f"{CLAIMANT}:{job.job_id}")
        return OpenCall(job=job, attempt=attempt, claimed=claimed)
    except (IllegalTransition, NotFound, Conflict):
        return OpenCall(job=job, attempt=None)


class _NoRetryOnceStreamed:
    """The engine's retry policy, except that a call which already sent text to its client is not run again
    (the client would receive the text twice): it fails instead."""

    def __init__(self, streamed):
        self.policy, self.streamed = default_policy(), streamed

    def should_retry(self, *, attempt: int, max_attempts: int) -> bool:
        return not self.streamed() and self.policy.should_retry(attempt=attempt, max_attempts=max_attempts)

    def delay(self, attempt: int) -> float:
        return self.policy.delay(attempt)

    def may_run_again(self) -> bool:  # on a fallback model: the client would receive text twice all the same
        return not self.streamed()


class CapacityWaiter:
    """Waits, in the call's own thread, for the provider capacity the call was refused (no slot, or the provider
    answered 429), up to the client's bound (X-AICore-Max-Wait). The client holds its request open meanwhile.

    While it waits the job shows what a job waiting in the queue shows: `pending` with its `waiting` field (the
    workflow's give-back, running -> pending, the attempt given back), claimable by a worker only once the bound
    and a grace period are past (so no worker takes it from us; should this process die, a worker runs it then,
    as any job waiting for capacity). Before it returns, the call claims its job again (pending -> running, the
    same attempt number, `waiting` cleared): the attempt goes on with the lease asked again, or, past the bound,
    the engine ends it timeout (CAPACITY_WAIT_EXCEEDED) and the client gets a 429. A job cancelled while it
    waited cannot be claimed again: the call is abandoned (CallAbandoned)."""

    def __init__(self, max_wait: float, *, job: AIJob | None = None, attempt: int | None = None):
        self.deadline = time.monotonic() + max_wait
        self.max_wait = max_wait
        self.job_pk, self.attempt = (job.pk, attempt) if job is not None and attempt is not None else (None, None)
        self.task_id = f"{CLAIMANT}:{job.job_id}" if job is not None else ""
        self.until: datetime | None = None  # when the last refusal said a slot frees: the 429's Retry-After

    def __call__(self, wait, should_stop) -> bool:
        """Sleep until `wait.until` and return True (ask again), or False when that is past the bound."""
        self.until = wait.until
        seconds = max((wait.until - timezone.now()).total_seconds(), MIN_CAPACITY_SLEEP)
        if time.monotonic() + seconds > self.deadline:
            return False
        shown = self._show_waiting(wait)
        try:
            end = time.monotonic() + seconds
            poll = settings.AICORE_CANCEL_POLL_MS / 1000
            look_at = time.monotonic() + poll
            while not should_stop() and (left := end - time.monotonic()) > 0:
                time.sleep(min(left, STOP_CHECK_SECONDS))
                if shown and time.monotonic() >= look_at:  # the watcher's round, for the job we gave back
                    if not self._still_waiting():
                        break  # cancelled: the claim below fails, the call is abandoned
                    look_at = time.monotonic() + poll
        finally:
            if shown:
                self._claim_again()
        return True

    def _show_waiting(self, wait) -> bool:
        """running -> pending, shown waiting (False: no job to show); CallAbandoned when the job is no longer
        running on our attempt (cancelled meanwhile)."""
        if self.job_pk is None:
            return False
        grace = self.max_wait + WAITING_GRACE_SECONDS
        try:
            job_wait_for_capacity(
                job_pk=self.job_pk,
                attempt=self.attempt,
                waiting=wait.as_waiting(),
                claimable_at=timezone.now() + timedelta(seconds=grace),
            )
        except (IllegalTransition, NotFound, Conflict):
            raise CallAbandoned() from None
        finally:
            connection.close()  # no connection held while we sleep
        return True

    def _still_waiting(self) -> bool:
        try:
            return AIJob.objects.filter(pk=self.job_pk, status=JobStatus.PENDING).exists()
        finally:
            connection.close()

    def _claim_again(self) -> None:
        """pending -> running on the same attempt number, `waiting` cleared; CallAbandoned when the job left
        pending meanwhile (cancelled)."""
        try:
            started = job_start(job_pk=self.job_pk, task_id=self.task_id)
        except (IllegalTransition, NotFound, Conflict):
            raise CallAbandoned() from None
        if started.attempt != self.attempt:  # cannot happen (give-back and claim are one attempt apart)
            raise CallAbandoned()

    def retry_after(self) -> str:
        """Whole seconds until the capacity frees, at least 1."""
        seconds = (self.until - timezone.now()).total_seconds() if self.until else 1
        return str(max(1, math.ceil(seconds)))


def call_run(
    call: OpenCall,
    *,
    max_wait: float = 0.0,
    on_token=None,
    hung_up=None,
    streamed=lambda: False,
    streamed_chars=lambda: 0,
) -> Outcome:
    """Run the call's attempt (or wait for whoever runs it) and return the finished job, else GatewayError.
    `max_wait`: the seconds the call may wait for provider capacity."""
    waiter = CapacityWaiter(max_wait, job=call.job, attempt=call.attempt)
    completed = []  # the result our attempt completed the job with: the answer, without reading the row back
    try:
        status = None
        if call.attempt is not None:
            status = execute(
                call.job.pk,
                call.attempt,
                job=call.claimed,
                on_token=on_token,
                stop_when=hung_up,
                policy=_NoRetryOnceStreamed(streamed),
                whole=on_token is None,  # the client waits for the whole answer: no stream to parse
                on_completed=completed.append,
                capacity_wait=waiter,
            )
            if hung_up is not None and hung_up() and status not in FINAL_STATUSES:
                call.hung_up = True
                _cancel_quietly(call.job, streamed_chars=streamed_chars())
        if status not in FINAL_STATUSES:  # a worker runs it (a retry, a replay, it claimed it first): wait for it
            job_wait_final(
                job_pk=call.job.pk, timeout_seconds=min(call.job.job_type.timeout_seconds * 3, MAX_WAIT_SECONDS)
            )
        if completed:
            tokens = completed[0].tokens
            return Outcome(
                result=completed[0].as_result_data(), usage=usage_body(tokens.input_tokens, tokens.output_tokens)
            )
        return _outcome(call.job, waiter)
    finally:
        close_old_connections()


def _cancel_quietly(job: AIJob, *, streamed_chars: int) -> None:
    """Cancel the job of a client that hung up, charging what was generated so far. The provider reports usage
    only at a stream's end, so the tokens are estimated (4 characters a token, the prompt counted in full)."""
    prompt = "".join(str(m.get("content") or "") for m in job.input_data.get("messages") or [])
    try:
        job_cancel(
            job_pk=job.pk,
            reason="client disconnected",
            input_tokens=estimate_tokens(prompt),
            output_tokens=(streamed_chars + 3) // 4,
        )
    except Conflict:  # it ended meanwhile
        pass


def _outcome(job: AIJob, waiter: CapacityWaiter) -> Outcome:
    """The call's answer from its job's final row: only the columns the answer needs (the rest is in `job`)."""
    row = (
        AIJob.objects.filter(pk=job.pk)
        .values("status", "result_data", "error_code", "error_message", "usage__input_tokens", "usage__output_tokens")
        .get()
    )
    status = row["status"]
    if status == JobStatus.COMPLETED:
        tokens = (row["usage__input_tokens"] or 0, row["usage__output_tokens"] or 0)
        return Outcome(result=row["result_data"] or {}, usage=usage_body(*tokens))
    if status == JobStatus.CANCELLED:
        raise GatewayError("The job was cancelled", status=409, code="JOB_CANCELLED")
    if status in FINAL_STATUSES and row["error_code"] == CAPACITY_WAIT_EXCEEDED:
        message = row["error_message"] or "No provider capacity within X-AICore-Max-Wait"
        raise GatewayError(
            message, status=429, code=CAPACITY_WAIT_EXCEEDED, headers={"Retry-After": waiter.retry_after()}
        )
    if status in FINAL_STATUSES:
        code = row["error_code"]
        http_status = 400 if code in {"PROVIDER_REJECTED", "MODEL_NOT_SUPPORTED", "PROVIDER_NOT_FOUND"} else 502
        message = row["error_message"] or f"The job ended {status}"
        raise GatewayError(message, status=http_status, code=code or "JOB_FAILED")
    raise GatewayError(
        f"The job is still {status}; fetch it later from /ai/jobs/{job.job_id}/",
        status=504,
        code="JOB_NOT_FINISHED",
    )
