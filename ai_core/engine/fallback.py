"""Fallback models: when a job's model cannot serve it, the job goes on with the next model it names.

A job names its fallbacks in `input_data.fallback_models`, else its type's `fallback_models`; it moves to the
next one that the catalogue serves with a key for the job's company:

1. when a transient provider error (5xx, timeout, network, 429) ends its last attempt on the current model;
2. when an attempt starts while the current model's provider circuit is open (engine.circuit): no call;
3. when an attempt finds no provider capacity (a configured or learned limit, a 429's Retry-After) for longer
   than AICORE_FALLBACK_AFTER_WAIT_SECONDS: the job runs on its next model rather than wait (`past_long_wait`).

Attempts: each model gets the job type's max_attempts. `attempts` keeps counting across models (it fences a
zombie's writes); `fallback_attempts` is what the earlier models spent.

A switch is one transaction (services.job_fall_back): the quota reservation re-made at the fallback's price,
then the compare-and-set running → pending that records the model and provider; its event's reason says from
which model to which and why. The job is claimable again at once (the fallback has not failed).
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from ai_core.dispatch import publish_job
from ai_core.engine import circuit, finish
from ai_core.engine.finish import Discarded
from ai_core.models import AIJob, JobStatus
from ai_core.services import job_fall_back
from ai_providers.selectors import ModelChoice, key_source, model_resolve
from business.errors import ApplicationError

logger = logging.getLogger(__name__)


def past_open_circuit(job: AIJob, provider: str) -> ModelChoice | None:
    """The fallback an attempt switches to without calling `provider`, whose circuit is open; None when the
    circuit is closed or the job has no fallback left (it then calls the provider, as it always did). A job
    without fallbacks costs no query here."""
    if not job.fallback_models() or not circuit.is_open(provider):
        return None
    return next_fallback(job)


def past_long_wait(job: AIJob, until: datetime) -> ModelChoice | None:
    """The fallback an attempt switches to instead of waiting for capacity until `until`, when that is further
    off than AICORE_FALLBACK_AFTER_WAIT_SECONDS; None for a shorter wait or a job without a fallback left (it
    then waits, as it always did). A job without fallbacks costs no query here."""
    bound = timedelta(seconds=settings.AICORE_FALLBACK_AFTER_WAIT_SECONDS)
    if not job.fallback_models() or until - timezone.now() <= bound:
        return None
    return next_fallback(job)


def next_fallback(job: AIJob) -> ModelChoice | None:
    """The first model after the job's current one in [its own model, *its fallbacks] that the catalogue still
    serves with a key for the job's company; None when there is none (the job then ends as it would have)."""
    chain = [job.primary_model(), *job.fallback_models()]
    current = job.current_model()
    if current not in chain:  # its type's list changed since the job switched: nothing is "next"
        return None
    for name in chain[chain.index(current) + 1 :]:
        try:
            choice = model_resolve(name)
        except ApplicationError:
            logger.warning("job %s: fallback model %r is not in the catalogue; skipped", job.job_id, name)
            continue
        if key_source(company_id=_company_of(job), provider=choice.provider) is not None:
            return choice
    return None


def _company_of(job: AIJob) -> int:
    """The job's company: as the engine's read of the job carries it, else through its brand."""
    return getattr(job, "company_id", None) or job.brand.company_id


def switch(job: AIJob, attempt: int, choice: ModelChoice, *, reason: str) -> str | None:
    """Move the job, on its running `attempt`, to the fallback model `choice` and wake a worker for it.

    Returns the status the attempt left the job in, like the runner's other ends: pending; failed with
    QUOTA_EXCEEDED when the fallback's reservation does not fit the brand's quota; None when the attempt's write
    was discarded (the job was cancelled or taken over meanwhile)."""
    try:
        job_fall_back(job=job, attempt=attempt, choice=choice, reason=reason)
    except Discarded:
        return None
    except ApplicationError as exc:
        if exc.status_code != 429:  # an on_replanned hook refusing the switch: QUOTA_EXCEEDED (ai_usage)
            raise
        return finish.fail(job.pk, attempt, exc.error_code, f"{reason}; fallback to {choice.name}: {exc.detail}")
    publish_job(job.pk, priority=job.priority)
    return JobStatus.PENDING
