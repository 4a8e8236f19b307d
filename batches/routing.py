"""Routing of completion_window "24h" jobs through provider Batch APIs, run by the worker's upkeep loop.

A routed job stays `pending` (unclaimable by workers: its available_at is held far ahead) until its provider
batch answers; then each answer is written through the normal transitions: a claim pending → running on the
attempt its custom_id names (the workflow's compare-and-set, fenced by the attempt), then the engine's finish
functions (complete at the Batch API price, or fail). A job cancelled meanwhile loses that claim: its answer is
discarded, and its cancel already released its reservation.

One round (upkeep_round):
1. Accumulate: per (company, provider, model), waiting jobs become a ProviderBatch once there are
   AICORE_PROVIDER_BATCH_MIN_JOBS of them or the oldest waited AICORE_PROVIDER_BATCH_MAX_WAIT_SECONDS.
2. Submit, recording before and after each provider step (PREPARING → UPLOADED → SUBMITTING → SUBMITTED), so a
   worker that dies between two steps resumes at the right one and never creates a second provider batch: the
   creation is preceded by find(). OpenAI: the submission key in the batch's metadata. Anthropic (no metadata):
   only one provider batch per provider is SUBMITTING at a time (a unique constraint), so a batch created since
   its recorded start that no record knows, of its size, is its own; two such and none is adopted or created.
3. Poll submitted batches every AICORE_PROVIDER_BATCH_POLL_SECONDS; an ended one's answers are written; its
   unanswered jobs (expired, failed, cancelled batch) go back to the normal path or end `timeout`
   (AICORE_PROVIDER_BATCH_ON_EXPIRY). A provider batch whose jobs were all cancelled is cancelled.
4. Complete the bulk submissions whose jobs all ended (batch.completed).
Provider calls never run inside a database transaction (they wait on the network).
"""

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Min, Q
from django.utils import timezone

from ai_core.dispatch import publish_job
from ai_core.engine import finish, handlers
from ai_core.engine.finish import Discarded
from ai_core.lifecycle import job_claim_answered, job_claim_to_end, job_make_claimable
from ai_core.models import AIJob, JobStatus
from ai_core.services import job_type_by_pk
from ai_providers.clients.base import ChatRequest, PermanentProviderError, ProviderError
from ai_providers.selectors import model_resolve
from ai_providers.services import client_for_model
from batches.models import BatchJob, ProviderBatch
from batches.models import ProviderBatchStatus as PB
from batches.services import batches_complete_open

# ai_providers.clients.batch_api (the provider SDKs) is imported on first use: never at start-up.
from business.errors import ApplicationError

logger = logging.getLogger(__name__)
S = JobStatus
LEASE = timedelta(minutes=10)
OPEN = (PB.PREPARING, PB.UPLOADED, PB.SUBMITTING)
# Called with the name of each step boundary the submission crosses (tests inject crashes there).
step_hook: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if step_hook is not None:
        step_hook(name)


def upkeep_round() -> None:
    route_waiting()
    for pk in ProviderBatch.objects.filter(status__in=OPEN).order_by("pk").values_list("pk", flat=True)[:20]:
        provider_batch_submit(pk)
    due = timezone.now() - timedelta(seconds=settings.AICORE_PROVIDER_BATCH_POLL_SECONDS)
    polled = ProviderBatch.objects.filter(status=PB.SUBMITTED).filter(Q(polled_at__isnull=True) | Q(polled_at__lte=due))
    for pk in polled.order_by("polled_at", "pk").values_list("pk", flat=True)[:20]:
        provider_batch_poll(pk)
    batches_complete_open()


# --- 1. accumulate ------------------------------------------------------------------------------------


def _waiting():
    return BatchJob.objects.filter(routed=True, provider_batch__isnull=True, job__status=S.PENDING)


def route_waiting(*, now=None) -> list[int]:
    """Form provider batches from the jobs waiting long enough or numerous enough. Returns their pks."""
    now = now or timezone.now()
    oldest_allowed = now - timedelta(seconds=settings.AICORE_PROVIDER_BATCH_MAX_WAIT_SECONDS)
    groups = (
        _waiting()
        .order_by()
        .values("job__brand__company_id", "provider_id", "model_name")
        .annotate(n=Count("pk"), oldest=Min("job__created_at"))
    )
    formed = []
    for group in groups:
        if group["n"] < settings.AICORE_PROVIDER_BATCH_MIN_JOBS and group["oldest"] > oldest_allowed:
            continue
        key = {"company_id": group["job__brand__company_id"], "provider_id": group["provider_id"]}
        members = _waiting().filter(job__brand__company_id=key["company_id"], provider_id=key["provider_id"])
        members = members.filter(model_name=group["model_name"])
        while True:
            batch = ProviderBatch.objects.create(model_name=group["model_name"], **key)
            chosen = members.order_by("pk").values("pk")[: settings.AICORE_PROVIDER_BATCH_MAX_JOBS]
            # provider_batch IS NULL again: a concurrent router took the same jobs first, each job goes to one.
            taken = BatchJob.objects.filter(pk__in=chosen, provider_batch__isnull=True).update(provider_batch=batch)
            if not taken:
                batch.delete()
                break
            ProviderBatch.objects.filter(pk=batch.pk).update(request_count=taken)
            formed.append(batch.pk)
            if taken < settings.AICORE_PROVIDER_BATCH_MAX_JOBS:
                break
    return formed


# --- 2. submit ----------------------------------------------------------------------------------------


def _lease(pk: int) -> bool:
    now = timezone.now()
    free = Q(leased_until__isnull=True) | Q(leased_until__lt=now)
    return ProviderBatch.objects.filter(free, pk=pk).update(leased_until=now + LEASE) == 1


def _release(pk: int, **fields) -> None:
    ProviderBatch.objects.filter(pk=pk).update(leased_until=None, **fields)


def custom_id_of(job: AIJob) -> str:
    """The job and the attempt its answer will be written on (the next one): `<job pk>-<attempt>`."""
    return f"{job.pk}-{job.attempts + 1}"


def _parse_custom_id(custom_id: str) -> tuple[int, int] | None:
    job, _, attempt = custom_id.partition("-")
    return (int(job), int(attempt)) if job.isdigit() and attempt.isdigit() else None


class _Requests:
    """The provider request of each job of a provider batch, built as the engine builds it."""

    def __init__(self, batch: ProviderBatch) -> None:
        from ai_providers.clients.batch_api import batch_api_for

        self.bound = client_for_model(batch.model_name, batch.company_id)
        self.api = batch_api_for(self.bound.client)
        self.jobs = {job.pk: job for job in AIJob.objects.filter(batch_link__provider_batch=batch).order_by("pk")}
        for job in self.jobs.values():
            job.job_type = job_type_by_pk(job.job_type_id)

    def of(self, job: AIJob) -> ChatRequest:
        request = self.bound.bound(handlers.build_request(job))
        request.stream = False
        return request

    def by_custom_id(self, custom_id: str) -> ChatRequest | None:
        parsed = _parse_custom_id(custom_id)
        job = self.jobs.get(parsed[0]) if parsed else None
        return self.of(job) if job is not None else None

    def lines(self) -> list:
        from ai_providers.clients.batch_api import BatchLine

        # Every job assigned, cancelled ones too: the lines, hence the file, are the same on a retried step.
        return [BatchLine(custom_id=custom_id_of(job), request=self.of(job)) for job in self.jobs.values()]


def provider_batch_submit(pk: int) -> str | None:
    """Drive one provider batch through its submission steps; returns the status it reached (None: leased by
    another worker). Each step's outcome is recorded right after it, the creation's start right before it."""
    if not _lease(pk):
        return None
    batch = ProviderBatch.objects.get(pk=pk)
    try:
        if not AIJob.objects.filter(batch_link__provider_batch=batch, status=S.PENDING).exists():
            _release(pk, status=PB.CANCELLED, ended_at=timezone.now())  # nothing left to ask
            return PB.CANCELLED
        work = _Requests(batch)
        if work.api is None:
            raise PermanentProviderError(f"Provider of '{batch.model_name}' has no Batch API")
        lines = work.lines()
        _let_go()
        if batch.status == PB.PREPARING and work.api.two_steps:
            file_id = work.api.upload(lines)
            _step("uploaded")
            ProviderBatch.objects.filter(pk=pk).update(input_file_id=file_id, status=PB.UPLOADED)
            batch.input_file_id, batch.status = file_id, PB.UPLOADED
            _step("upload recorded")
        if batch.status != PB.SUBMITTING:
            if not _enter_submitting(batch):
                _release(pk)  # another creation for this provider is in flight: the next round tries again
                return batch.status
            _step("submitting recorded")
        found = work.api.find(
            batch.submission_key, since=batch.submit_started_at, count=len(lines), **_known(work.api, batch)
        )
        provider_batch_id = found or work.api.create(
            batch.submission_key, input_file_id=batch.input_file_id, lines=lines
        )
        _step("created")
        _release(
            pk,
            provider_batch_id=provider_batch_id,
            status=PB.SUBMITTED,
            submitted_at=timezone.now(),
            request_count=len(lines),
        )
        logger.info("provider batch %s: %s (%s requests)", pk, provider_batch_id, len(lines))
        return PB.SUBMITTED
    except PermanentProviderError as exc:
        logger.warning("provider batch %s refused: %s", pk, exc.message)
        _end_unanswered(batch, reason=exc.message)
        _release(pk, status=PB.FAILED, error_message=exc.message[:2000], ended_at=timezone.now())
        return PB.FAILED
    except ProviderError as exc:  # transient: the next round tries this step again
        logger.warning("provider batch %s: step failed, will retry: %s", pk, exc.message)
        _release(pk)
        return batch.status


def _let_go() -> None:
    """The provider calls that follow wait on the network: hold no database connection meanwhile (unless a
    caller's transaction owns it)."""
    if not connection.in_atomic_block:
        connection.close()


def _enter_submitting(batch: ProviderBatch) -> bool:
    """Record the creation's start (status SUBMITTING, its time), unless another provider batch of the same
    provider is being created (providerbatch_one_submitting): then False, nothing recorded."""
    started = timezone.now() - timedelta(seconds=5)  # the provider's clock may lag ours
    try:
        with transaction.atomic():
            ProviderBatch.objects.filter(pk=batch.pk).update(status=PB.SUBMITTING, submit_started_at=started)
    except IntegrityError:
        return False
    batch.status, batch.submit_started_at = PB.SUBMITTING, started
    return True


def _known(api, batch: ProviderBatch) -> dict:
    """One-step APIs (Anthropic) find a batch by elimination: the provider batch ids every record knows."""
    if api.two_steps:
        return {}
    recorded = ProviderBatch.objects.filter(provider_id=batch.provider_id).exclude(provider_batch_id="")
    return {"known": set(recorded.values_list("provider_batch_id", flat=True))}


# --- 3. poll and write the answers --------------------------------------------------------------------


def provider_batch_poll(pk: int) -> str | None:
    """Look at one submitted provider batch; once ended, write every answer to its job. Returns its status."""
    if not _lease(pk):
        return None
    batch = ProviderBatch.objects.get(pk=pk)
    try:
        work = _Requests(batch)
        jobs_left = [job for job in work.jobs.values() if job.status == S.PENDING]
        _let_go()
        if not jobs_left:
            # Every job was cancelled (or ended otherwise): the provider batch is of no use any more.
            work.api.cancel(batch.provider_batch_id)
            _release(pk, status=PB.CANCELLED, ended_at=timezone.now(), provider_status="cancelled")
            return PB.CANCELLED
        state = work.api.poll(batch.provider_batch_id)
        if not state.ended:
            _release(pk, provider_status=state.provider_status[:30], polled_at=timezone.now())
            return PB.SUBMITTED
        answers = []
        for outcome in work.api.outcomes(batch.provider_batch_id, work.by_custom_id):
            parsed = _parse_custom_id(outcome.custom_id)
            if parsed is not None and parsed[0] in work.jobs and not outcome.unanswered:
                answers.append((*parsed, outcome))
        _write_all(batch, answers)
        answered = {job_pk for job_pk, _, _ in answers}
        unanswered = [job.pk for job in jobs_left if job.pk not in answered]
        if unanswered:
            _end_unanswered(batch, reason=f"the provider batch ended {state.provider_status}", job_pks=unanswered)
        ok = state.provider_status in {"completed", "ended"}
        _release(
            pk,
            status=PB.ENDED if ok else PB.FAILED,
            provider_status=state.provider_status[:30],
            polled_at=timezone.now(),
            ended_at=timezone.now(),
        )
        return PB.ENDED if ok else PB.FAILED
    except ProviderError as exc:
        logger.warning("provider batch %s: poll failed, will retry: %s", pk, exc.message)
        _release(pk, polled_at=timezone.now())
        return PB.SUBMITTED


def _write_all(batch: ProviderBatch, answers: list[tuple]) -> None:
    """Write the answers, on AICORE_PROVIDER_BATCH_WRITERS threads (each its own connection) on PostgreSQL:
    each job's end is its own short transactions, and one thread wrote 10 000 of them in about a minute."""
    writers = settings.AICORE_PROVIDER_BATCH_WRITERS
    if writers <= 1 or connection.vendor != "postgresql" or connection.in_atomic_block or len(answers) < 2 * writers:
        for answer in answers:
            _write(batch, *answer)
        return

    def write_share(share: list[tuple]) -> None:
        try:
            for answer in share:
                _write(batch, *answer)
        finally:
            connection.close()  # this thread's own connection

    with ThreadPoolExecutor(max_workers=writers, thread_name_prefix="aicore-batch-writer") as pool:
        for done in [pool.submit(write_share, answers[i::writers]) for i in range(writers)]:
            done.result()


def _write(batch: ProviderBatch, job_pk: int, attempt: int, outcome) -> str | None:
    """Claim the job on the custom_id's attempt (pending → running), then complete or fail it."""
    try:
        job_claim_answered(job_pk=job_pk, attempt=attempt, provider_batch_id=batch.provider_batch_id)
    except Discarded:
        return None  # cancelled (or deleted) meanwhile: the answer is discarded
    if outcome.result is not None:
        return finish.complete(job_pk, attempt, outcome.result, batch=True)
    return finish.fail(job_pk, attempt, outcome.error.error_code, outcome.error.message)


def _end_unanswered(batch: ProviderBatch, *, reason: str, job_pks: list[int] | None = None) -> None:
    """The jobs a provider batch will not answer: back to the normal path (a wake-up each), or `timeout`."""
    if job_pks is None:
        job_pks = list(
            AIJob.objects.filter(batch_link__provider_batch=batch, status=S.PENDING).values_list("pk", flat=True)
        )
    if settings.AICORE_PROVIDER_BATCH_ON_EXPIRY == "requeue":
        BatchJob.objects.filter(job_id__in=job_pks).update(routed=False, provider_batch=None)
        for job in AIJob.objects.filter(pk__in=job_pks, status=S.PENDING).select_related("brand", "api_key"):
            _requeue(job)
        return
    for job_pk, attempts in AIJob.objects.filter(pk__in=job_pks, status=S.PENDING).values_list("pk", "attempts"):
        _end_now(job_pk, attempts, reason, finish.timeout)


def _requeue(job: AIJob) -> None:
    """Give a job its provider batch did not answer to the normal path, at the standard price: its reservation
    (made at the batch price) grows to what the normal path may charge, in the transaction that makes it
    claimable. A quota that cannot cover that ends it `failed` (QUOTA_EXCEEDED), its reservation released."""
    job.job_type = job_type_by_pk(job.job_type_id)
    choice = model_resolve(job.input_data.get("model") or job.job_type.default_model)
    try:
        if not job_make_claimable(job=job, choice=choice):
            return  # cancelled meanwhile
    except ApplicationError as exc:
        if exc.status_code != 429:  # QUOTA_EXCEEDED (ai_usage's hook): it cannot cover the standard price
            raise
        fail = partial(finish.fail, error_code=exc.error_code, message=exc.detail)
        _end_now(job.pk, job.attempts, "the quota cannot cover the standard price", fail)
        return
    publish_job(job.pk)


def _end_now(job_pk: int, attempts: int, reason: str, end: Callable[[int, int], object]) -> None:
    """End a pending routed job without a provider call: claimed (pending → running), then `end`."""
    try:
        job_claim_to_end(job_pk=job_pk, attempts=attempts, reason=reason)
    except Discarded:
        return
    end(job_pk, attempts + 1)
