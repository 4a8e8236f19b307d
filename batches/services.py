"""Writes on batches: bulk creation (validated all together, reserved in one step, inserted in bulk), cancel,
and the one-time completion (`batch.completed`)."""

from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ai_core import lifecycle
from ai_core.dispatch import dispatch_jobs_on_commit
from ai_core.hooks import Created
from ai_core.models import FINAL_STATUSES, AIJob, JobPriority, JobStatus, new_job_id
from ai_core.services import JobRouter, job_check, job_provider_request, job_type_get
from ai_providers.models import ProviderKind
from ai_providers.selectors import ModelChoice
from batches.models import Batch, BatchJob, CompletionWindow
from batches.selectors import batch_summary
from batches.signals import batch_completed
from business.errors import ApplicationError
from business.models import Brand, User
from business.sql import bulk_insert_values

S = JobStatus
# Providers whose Batch API the routing speaks (batches.routing); a 24 h job of another provider (echo) runs
# on the normal path.
BATCH_API_KINDS = frozenset({ProviderKind.OPENAI, ProviderKind.ANTHROPIC})
# A routed job is claimable by no worker until the routing gives it back (re-queue) or claims it itself.
ROUTED_HOLD = timedelta(days=3650)


def routes_to_provider(choice: ModelChoice, completion_window: str) -> bool:
    """Whether a job goes through its provider's Batch API: a 24 h job of a provider that has one."""
    return completion_window == CompletionWindow.DAY and choice.provider.kind in BATCH_API_KINDS


def single_job_route(job: AIJob, choice: ModelChoice) -> None:
    """A single routed job (POST /ai/jobs/): a link without batch, where the routing finds waiting jobs."""
    BatchJob.objects.create(job=job, batch=None, line=0, routed=True, provider=choice.provider, model_name=choice.name)


def job_is_routed(job_pk: int) -> bool:
    return BatchJob.objects.filter(job_id=job_pk, routed=True).exists()


# What ai_core.services asks of a single job (registered in BatchesConfig.ready).
SINGLE_JOB_ROUTER = JobRouter(routes=routes_to_provider, attach=single_job_route, hold=ROUTED_HOLD, holds=job_is_routed)


class BatchValidationError(ApplicationError):
    error_code = "BATCH_VALIDATION_ERROR"


@dataclass(frozen=True)
class BatchLine:
    """One job of a submission, as the API read it (JSON item or JSONL line)."""

    input_data: Any
    description: str = ""
    priority: str | None = None
    custom_id: str = ""
    error: dict | None = None  # the line could not even be read (malformed JSON, not an object)


def batch_create(
    *,
    brand: Brand,
    user: User | None,
    job_type: str,
    lines: list[BatchLine],
    priority: str = JobPriority.NORMAL,
    description: str = "",
    completion_window: str = CompletionWindow.NOW,
    partial: bool = False,
) -> tuple[Batch, list[dict]]:
    """Validate every line as POST /ai/jobs/ would (ai_core.services.job_check), then create the batch and its
    jobs in one transaction. Returns (batch, errors of the lines left out).

    1. Each line is checked; its errors are listed by line. Any error refuses the whole batch
       (BATCH_VALIDATION_ERROR, nothing written) unless `partial`, which creates the valid ones.
    2. The quotas reserve the sum of the jobs' maxima in one conditional step (QUOTA_EXCEEDED refuses all).
    3. Jobs, their creation events, the roll-up's +N pending, OpenAI rows and batch links: bulk inserts.
    4. After commit, a wake-up per job of the normal path; 24 h jobs of a Batch API provider wait for the
       routing (batches.routing), unclaimable by workers meanwhile.
    """
    type_ = job_type_get(job_type)
    if completion_window not in CompletionWindow.values:
        raise BatchValidationError(
            "completion_window must be 'now' or '24h'", errors=[{"field": "completion_window", "messages": ["Invalid"]}]
        )
    if priority not in JobPriority.values:
        raise BatchValidationError(f"Unknown priority '{priority}'", errors=[{"field": "priority"}])
    if not lines:
        raise BatchValidationError("A batch needs at least one job", errors=[])
    if len(lines) > settings.AICORE_BATCH_MAX_JOBS:
        raise BatchValidationError(
            f"A batch holds at most {settings.AICORE_BATCH_MAX_JOBS} jobs ({len(lines)} given)", errors=[]
        )
    accepted, errors, keys_seen = [], [], {}
    custom_ids: set[str] = set()
    for index, line in enumerate(lines):
        problem = line.error
        if problem is None:
            problem = _line_problem(line, custom_ids)
        if problem is None:
            try:
                choice = job_check(
                    brand=brand,
                    job_type=type_,
                    input_data=line.input_data,
                    priority=line.priority or priority,
                    keys_seen=keys_seen,
                )
            except ApplicationError as exc:
                problem = {"error_code": exc.error_code, "detail": exc.detail, **_field_errors(exc)}
        if problem is not None:
            errors.append({"line": index, **({"custom_id": line.custom_id} if line.custom_id else {}), **problem})
            continue
        custom_ids.add(line.custom_id)
        accepted.append((index, line, choice))
    if errors and (not partial or not accepted):
        raise BatchValidationError(
            f"{len(errors)} of {len(lines)} jobs are invalid; nothing was created"
            + ("" if partial else " (?partial=true creates the valid ones)"),
            errors=errors[: settings.AICORE_BATCH_MAX_ERRORS_LISTED],
            invalid_count=len(errors),
        )
    return _insert(brand, user, type_, accepted, priority, description, completion_window), errors


def _line_problem(line: BatchLine, custom_ids: set[str]) -> dict | None:
    if not isinstance(line.custom_id, str) or len(line.custom_id) > 64:
        return {"error_code": "VALIDATION_ERROR", "errors": {"custom_id": ["At most 64 characters."]}}
    if line.custom_id and line.custom_id in custom_ids:
        return {"error_code": "VALIDATION_ERROR", "errors": {"custom_id": ["Used by another job of the batch."]}}
    if not isinstance(line.description, str) or len(line.description) > 2000:
        return {"error_code": "VALIDATION_ERROR", "errors": {"description": ["At most 2000 characters."]}}
    return None


def _field_errors(exc: ApplicationError) -> dict:
    extra = dict(exc.extra)
    return {"errors": extra["errors"]} if "errors" in extra else {}


# The columns of a new job that differ between the jobs of one batch (bulk_insert_like): the others are the
# template's.
JOB_VARYING = ["job_id", "priority", "description", "input_data", "available_at"]


def _insert(brand, user, type_, accepted, priority, description, completion_window) -> Batch:
    now = timezone.now()
    routed = [routes_to_provider(choice, completion_window) for _, _, choice in accepted]
    template = AIJob(
        job_type=type_,
        brand=brand,
        created_by=user,
        priority=priority,
        is_async=type_.requires_async,
        created_at=now,
        updated_at=now,
        available_at=now,
    )
    held = now + ROUTED_HOLD
    rows = [
        (new_job_id(), line.priority or priority, line.description or "", line.input_data, held if to_provider else now)
        for (_, line, _), to_provider in zip(accepted, routed, strict=True)
    ]
    with transaction.atomic():
        batch = Batch.objects.create(
            brand=brand,
            created_by=user,
            job_type=type_,
            completion_window=completion_window,
            description=description,
            total_jobs=len(rows),
            created_at=now,
        )
        pks = lifecycle.jobs_insert_bulk(
            template,
            JOB_VARYING,
            rows,
            created=lambda i, pk: Created(
                job=None,
                job_pk=pk,
                brand=brand,
                input_data=accepted[i][1].input_data,
                choice=accepted[i][2],
                request=partial(_request_of, template, pk, accepted[i][1].input_data),
                batch=routed[i],
                bulk=True,
            ),
            actor_id=user.pk if user is not None else None,
        )
        bulk_insert_values(
            BatchJob,
            [
                {
                    "job_id": pk,
                    "batch_id": batch.pk,
                    "line": index,
                    "custom_id": line.custom_id,
                    "provider_batch_id": None,
                    "routed": to_provider,
                    "provider_id": choice.provider.pk if to_provider else None,
                    "model_name": choice.name if to_provider else "",
                }
                for pk, (index, line, choice), to_provider in zip(pks, accepted, routed, strict=True)
            ],
        )
        dispatch_jobs_on_commit([pk for pk, to_provider in zip(pks, routed, strict=True) if not to_provider])
    return batch


def _request_of(template: AIJob, pk: int, input_data: dict):
    """The provider request of one new job of the batch (what its reservation covers)."""
    job = AIJob(pk=pk, job_type=template.job_type, brand=template.brand, input_data=input_data)
    return job_provider_request(job)


CANCEL_CHUNK = 2000  # jobs per transaction of a batch's cancel


def batch_cancel(*, batch: Batch, actor: User | None = None) -> dict[str, int]:
    """Cancel every job of the batch not yet final, set-based: per chunk of jobs, one transaction of the
    lifecycle's jobs_cancel (the extensions lock what the jobs hold, the workflow's bulk compare-and-set moves
    them with their events and roll-up, then the reservations of the jobs it moved go back). A job that became
    final meanwhile is left as it is (and keeps its reservation's outcome)."""
    Batch.objects.filter(pk=batch.pk, cancel_requested_at__isnull=True).update(cancel_requested_at=timezone.now())
    open_jobs = list(
        AIJob.objects.filter(batch_link__batch=batch)
        .exclude(status__in=FINAL_STATUSES)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    actor_id = actor.pk if actor is not None else None
    cancelled = 0
    for start in range(0, len(open_jobs), CANCEL_CHUNK):
        chunk = open_jobs[start : start + CANCEL_CHUNK]
        moved = lifecycle.jobs_cancel(chunk, reason="batch cancelled", actor_id=actor_id)
        cancelled += len(moved)
    batch_complete_if_done(batch_pk=batch.pk)
    return {"cancelled": cancelled, "already_final": len(open_jobs) - cancelled}


def batch_complete_if_done(*, batch_pk: int) -> bool:
    """Stamp `completed_at` once, when none of the batch's jobs is pending or running any more, and announce
    `batch.completed` after commit. A compare-and-set on completed_at IS NULL: announced exactly once."""
    if AIJob.objects.filter(batch_link__batch_id=batch_pk).exclude(status__in=FINAL_STATUSES).exists():
        return False
    with transaction.atomic():
        if Batch.objects.filter(pk=batch_pk, completed_at__isnull=True).update(completed_at=timezone.now()) != 1:
            return False
        batch = Batch.objects.select_related("job_type").get(pk=batch_pk)
        summary = batch_summary(batch)
        transaction.on_commit(lambda: batch_completed.send(sender=Batch, batch=batch, summary=summary), robust=True)
    return True


def batches_complete_open(*, limit: int = 200) -> int:
    """The upkeep's pass over batches not yet complete: completes those whose jobs are all final."""
    done = 0
    for batch_pk in (
        Batch.objects.filter(completed_at__isnull=True).order_by("created_at").values_list("pk", flat=True)[:limit]
    ):
        done += batch_complete_if_done(batch_pk=batch_pk)
    return done
