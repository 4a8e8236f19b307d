"""factory_boy factories for job types and jobs.

Jobs are made through the services, never by inserting rows, so every job a test creates has its creation
event, its transition events and its place in the JobDailyStat roll-up, exactly as in production:

    AIJobFactory(brand=brand, created_by=user, status="completed")
"""

from datetime import datetime

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from ai_core import services
from ai_core.job_type_defaults import DEFAULT_JOB_TYPES
from ai_core.models import AIJob, AIJobType, JobPriority, JobStatus
from ai_core.workflow import stat_move
from business.tests.factories import BrandFactory, UserFactory

_DEFAULTS = {spec["name"]: spec for spec in DEFAULT_JOB_TYPES}
S = JobStatus


def input_for(job_type_name: str, text: str = "hello") -> dict:
    """A valid input_data for one of the default job types (an object for any other type)."""
    if job_type_name == "text_generation":
        return {"prompt": text}
    if job_type_name == "content_analysis":
        return {"content": text}
    return {"messages": [{"role": "user", "content": text}]}


class AIJobTypeFactory(DjangoModelFactory):
    """A job type; the default types' names give their real settings and schema (get-or-create by name)."""

    class Meta:
        model = AIJobType
        django_get_or_create = ("name",)

    name = "chat_completion"
    description = factory.LazyAttribute(lambda t: _DEFAULTS.get(t.name, {}).get("description", t.name))
    category = factory.LazyAttribute(lambda t: _DEFAULTS.get(t.name, {}).get("category", "chat"))
    estimated_duration_seconds = factory.LazyAttribute(
        lambda t: _DEFAULTS.get(t.name, {}).get("estimated_duration_seconds", 10)
    )
    requires_async = factory.LazyAttribute(lambda t: _DEFAULTS.get(t.name, {}).get("requires_async", False))
    timeout_seconds = factory.LazyAttribute(lambda t: _DEFAULTS.get(t.name, {}).get("timeout_seconds", 60))
    max_attempts = factory.LazyAttribute(lambda t: _DEFAULTS.get(t.name, {}).get("max_attempts", 3))
    input_schema = factory.LazyAttribute(lambda t: _DEFAULTS.get(t.name, {}).get("input_schema", {}))


def drive_to(job: AIJob, status: str, *, actor=None) -> None:
    """Walk a pending job through legal transitions to `status`; each step is the real service."""
    if status == S.PENDING:
        return
    if status == S.CANCELLED:
        services.job_cancel(job_pk=job.pk, actor=actor)
        return
    started = services.job_start(job_pk=job.pk, task_id=f"task-{job.job_id}")
    if status == S.COMPLETED:
        services.job_complete(job_pk=job.pk, attempt=started.attempt, result_data={"completion": "done"})
    elif status == S.FAILED:
        services.job_fail(job_pk=job.pk, attempt=started.attempt, error_message="provider said no")
    elif status == S.TIMEOUT:
        services.job_timeout(job_pk=job.pk, attempt=started.attempt)


class AIJobFactory(DjangoModelFactory):
    """A job created by `job_create` and driven to `status`; `created_at` backdates it (roll-up follows)."""

    class Meta:
        model = AIJob

    brand = factory.SubFactory(BrandFactory)
    created_by = factory.LazyAttribute(lambda j: UserFactory(company=j.brand.company, brands=[j.brand]))
    job_type = factory.SubFactory(AIJobTypeFactory)
    priority = JobPriority.NORMAL
    description = factory.Sequence(lambda n: f"job number {n}")
    input_data = factory.LazyAttribute(lambda j: input_for(j.job_type.name))
    status = S.PENDING
    created_at = None

    @classmethod
    def _create(
        cls,
        model_class,
        *,
        brand,
        created_by,
        job_type,
        priority,
        description,
        input_data,
        status,
        created_at: datetime | None = None,
        **kwargs,
    ):
        job, _ = services.job_create(
            brand=brand,
            user=created_by,
            job_type=job_type.name,
            input_data=input_data,
            priority=priority,
            description=description,
            **kwargs,
        )
        if created_at is not None:
            _backdate(job, created_at)
        drive_to(job, status, actor=created_by)
        job.refresh_from_db()
        return job


def _backdate(job: AIJob, created_at: datetime) -> None:
    """Move a fresh pending job to another creation time, keeping the roll-up equal to the rows."""
    stat_move(
        brand_id=job.brand_id,
        day=timezone.localdate(job.created_at),
        job_type_id=job.job_type_id,
        deltas={S.PENDING: -1},
    )
    AIJob.objects.filter(pk=job.pk).update(created_at=created_at)
    job.events.update(at=created_at)
    stat_move(
        brand_id=job.brand_id,
        day=timezone.localdate(created_at),
        job_type_id=job.job_type_id,
        deltas={S.PENDING: +1},
    )
    job.created_at = created_at
