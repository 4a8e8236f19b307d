"""The final writes of an attempt (runner and reaper alike), fenced by its attempt number.

Accounting apps (usage, quota settlement) write with the final state through the lifecycle's hooks
(ai_core/hooks.py: on_final, in the end's own statement or transaction). A write that lost to a cancel,
another attempt or a deletion is discarded: the function returns None instead of the status.
"""

import logging
from collections.abc import Callable

from ai_core.models import AIJob, JobStatus
from ai_core.services import Completion, job_complete, job_fail, job_timeout, jobs_complete
from ai_core.workflow import IllegalTransition, StaleAttempt
from ai_providers.clients.base import ChatResult
from business.errors import NotFound

logger = logging.getLogger(__name__)
Discarded = (IllegalTransition, StaleAttempt, NotFound)  # NotFound: the job was deleted meanwhile


def _finish(
    job_pk: int,
    attempt: int,
    status: str,
    write: Callable[[], object],
    *,
    result: ChatResult | None = None,
    error_code: str = "",
) -> str | None:
    try:
        write()  # one statement, or one transaction (ai_core.lifecycle._finalize): no outer one
    except Discarded as exc:
        logger.info("job %s attempt %s: %s write discarded (%s)", job_pk, attempt, status, exc)
        return None
    return status


def complete(
    job_pk: int, attempt: int, result: ChatResult, job: AIJob | None = None, *, batch: bool = False
) -> str | None:
    return _finish(
        job_pk,
        attempt,
        JobStatus.COMPLETED,
        lambda: job_complete(
            job_pk=job_pk,
            attempt=attempt,
            result_data=result.as_result_data(),
            tokens=result.tokens,
            job=job,
            batch=batch,
        ),
        result=result,
    )


def complete_many(items: list[tuple[int, int, ChatResult, AIJob | None]]) -> list[str | None]:
    """Complete (job pk, attempt, result, job) items by the lifecycle's batched end (one transaction, the hooks
    called once, one compare-and-set statement for all): the status each was left in, None where its write was
    discarded (as complete() says). Raises when the batch as a whole failed (nothing of it written)."""
    statuses = jobs_complete(
        [
            Completion(job_pk=pk, attempt=attempt, result_data=result.as_result_data(), tokens=result.tokens, job=job)
            for pk, attempt, result, job in items
        ]
    )
    for (pk, attempt, *_), status in zip(items, statuses, strict=True):
        if status is None:
            logger.info("job %s attempt %s: %s write discarded", pk, attempt, JobStatus.COMPLETED)
    return statuses


def fail(job_pk: int, attempt: int, error_code: str, message: str) -> str | None:
    return _finish(
        job_pk,
        attempt,
        JobStatus.FAILED,
        lambda: job_fail(job_pk=job_pk, attempt=attempt, error_code=error_code, error_message=message),
        error_code=error_code,
    )


def timeout(
    job_pk: int, attempt: int, *, error_code: str = "JOB_TIMEOUT", message: str = "The job exceeded its time limit"
) -> str | None:
    return _finish(
        job_pk,
        attempt,
        JobStatus.TIMEOUT,
        lambda: job_timeout(job_pk=job_pk, attempt=attempt, error_code=error_code, error_message=message),
        error_code=error_code,
    )
