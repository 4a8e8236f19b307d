from django.core.exceptions import FieldDoesNotExist
from django.db import models
from rest_framework import serializers

from ai_core.extensions import job_extension
from ai_core.models import AIJob, AIJobEvent, AIJobType, JobPriority, JobStatus
from business.timestamps import api_timestamp


def _attr(name):
    return lambda obj: getattr(obj, name)


def _when(name):
    return lambda obj: api_timestamp(getattr(obj, name))


# Columns whose attribute is already their JSON form (DRF's field would hand it back unchanged).
_PLAIN_COLUMNS = (
    models.CharField,
    models.TextField,
    models.IntegerField,
    models.BooleanField,
    models.FloatField,
    models.JSONField,
)


def _column_renderer(model, name):
    """The fast renderer of a plain column of `model`: its attribute, a timestamp in the API's form; None for
    anything else (relations, computed values, other types), which then renders through its DRF field."""
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        return None
    if field.is_relation or not field.concrete:
        return None
    if isinstance(field, models.DateTimeField):
        return _when(name)
    return _attr(name) if isinstance(field, _PLAIN_COLUMNS) else None


def _user_ref(job):
    user = job.created_by
    return None if user is None else {"id": user.id, "username": user.username}


class LeanRepresentationMixin:
    """Renders an object from plain per-field functions instead of DRF's per-request field instances.

    Lists render 20 jobs and the job API is the hottest path: building and walking ~25 bound fields per
    object cost more than the database. The declared fields still describe the API (OpenAPI) and any field
    without a fast renderer falls back to its DRF field, so adding a field never breaks the output.

    Meta.fields is the one field list: `renderers` names only the fields that are no plain column (nested
    objects, computed values); every plain column of Meta.fields gets its renderer from the model.
    """

    renderers: dict = {}
    fast_fields: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        model, names = cls.Meta.model, cls.Meta.fields
        cls.fast_fields = {
            name: render
            for name in names
            if (render := cls.renderers.get(name) or _column_renderer(model, name)) is not None
        }

    def to_representation(self, instance):
        fast = self.fast_fields
        out = {}
        fields = None
        for name in self.Meta.fields:
            render = fast.get(name)
            if render is not None:
                out[name] = render(instance)
                continue
            if fields is None:
                fields = self.fields
            field = fields[name]
            value = field.get_attribute(instance)
            out[name] = None if value is None else field.to_representation(value)
        return out


class JobTypeSerializer(serializers.ModelSerializer):
    class Meta:
        model = AIJobType
        fields = [
            "id",
            "name",
            "description",
            "category",
            "estimated_duration_seconds",
            "requires_async",
            "default_model",
            "default_completion_window",
            "timeout_seconds",
            "max_attempts",
            "fallback_models",
            "max_queue_seconds",
            "input_schema",
        ]
        read_only_fields = fields


class JobTypeRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    category = serializers.CharField()


class BrandRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class UserRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class WaitingSerializer(serializers.Serializer):
    """Why a pending job is not running yet and when it is next tried (null: it is not waiting)."""

    reason = serializers.ChoiceField(choices=["provider_capacity"])
    provider = serializers.CharField()
    model = serializers.CharField()
    until = serializers.DateTimeField()


class JobSerializer(LeanRepresentationMixin, serializers.ModelSerializer):
    """A job as lists show it (the original's list example, plus the lifecycle additions)."""

    renderers = {
        "execution_time_seconds": _attr("execution_time_seconds"),
        "job_type": lambda job: {"id": job.job_type.id, "name": job.job_type.name, "category": job.job_type.category},
        "brand": lambda job: {"id": job.brand.id, "name": job.brand.name},
        "created_by": _user_ref,
        # Only a pending job waits (a job cancelled while waiting keeps the field, stale).
        "waiting": lambda job: job.waiting if job.status == JobStatus.PENDING else None,
    }

    job_type = JobTypeRefSerializer(read_only=True)
    brand = BrandRefSerializer(read_only=True)
    created_by = UserRefSerializer(read_only=True, allow_null=True)
    execution_time_seconds = serializers.FloatField(read_only=True, allow_null=True)
    waiting = WaitingSerializer(read_only=True, allow_null=True)

    class Meta:
        model = AIJob
        fields = [
            "id",
            "job_id",
            "job_type",
            "status",
            "priority",
            "progress_percentage",
            "brand",
            "created_by",
            "created_at",
            "updated_at",
            "started_at",
            "completed_at",
            "cancelled_at",
            "description",
            "input_data",
            "result_data",
            "error_message",
            "error_code",
            "is_async",
            "attempts",
            "execution_time_seconds",
            "waiting",
        ]
        read_only_fields = fields


class JobEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AIJobEvent
        fields = ["id", "from_status", "to_status", "at", "attempt", "reason", "actor"]
        read_only_fields = fields


def _events(job):
    rows = getattr(job, "event_rows", None)  # plain rows from selectors.job_get(for_detail=True)
    if rows is None:
        rows = job.events.order_by("id").values("id", "from_status", "to_status", "at", "attempt", "reason", "actor_id")
    return [
        {
            "id": e["id"],
            "from_status": e["from_status"],
            "to_status": e["to_status"],
            "at": api_timestamp(e["at"]),
            "attempt": e["attempt"],
            "reason": e["reason"],
            "actor": e["actor_id"],
        }
        for e in rows
    ]


class JobFallbackSerializer(serializers.Serializer):
    """The fallback model a job switched to when its own model's provider was down."""

    model = serializers.CharField(help_text="the model the job runs (ran) on")
    provider = serializers.CharField(help_text="that model's provider")
    primary_model = serializers.CharField(help_text="the model the job asked for")
    after_attempts = serializers.IntegerField(help_text="attempts spent on the models before it")


def _fallback(job) -> dict | None:
    if not job.fallback_model:
        return None
    return {
        "model": job.fallback_model,
        "provider": job.fallback_provider,
        "primary_model": job.primary_model(),
        "after_attempts": job.fallback_attempts,
    }


class JobDetailSerializer(JobSerializer):
    model = serializers.CharField(
        read_only=True, help_text="the model the job runs (ran) on: a fallback's once it switched"
    )
    fallback = JobFallbackSerializer(read_only=True, allow_null=True)
    openai_job = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()
    events = JobEventSerializer(many=True, read_only=True)

    renderers = {
        **JobSerializer.renderers,
        "model": lambda job: job.current_model(),
        "fallback": _fallback,
        "openai_job": lambda job: job_extension(job, "openai_job"),
        "usage": lambda job: job_extension(job, "usage"),
        "events": _events,
    }

    class Meta(JobSerializer.Meta):
        fields = JobSerializer.Meta.fields + ["task_id", "model", "fallback", "openai_job", "usage", "events"]
        read_only_fields = fields

    def get_openai_job(self, job) -> dict | None:
        return job_extension(job, "openai_job")

    def get_usage(self, job) -> dict | None:
        return job_extension(job, "usage")


class JobCreateSerializer(serializers.Serializer):
    job_type = serializers.CharField(max_length=100)
    priority = serializers.ChoiceField(choices=JobPriority.choices, default=JobPriority.NORMAL)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    input_data = serializers.JSONField()


class JobUpdateSerializer(serializers.Serializer):
    """Only these fields are client-writable; anything else in the body is ignored, never applied."""

    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    priority = serializers.ChoiceField(choices=JobPriority.choices, required=False)
    input_data = serializers.JSONField(required=False)
    progress_percentage = serializers.IntegerField(min_value=0, max_value=100, required=False)


class JobCancelledSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    job_id = serializers.CharField()
    status = serializers.CharField()
    cancelled_at = serializers.DateTimeField()


class CancelResponseSerializer(serializers.Serializer):
    message = serializers.CharField()
    job = JobCancelledSerializer()


class ByStatusResponseSerializer(serializers.Serializer):
    jobs = JobSerializer(many=True)
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True, required=False)
    previous = serializers.URLField(allow_null=True, required=False)


class DashboardStatsSerializer(serializers.Serializer):
    total_jobs = serializers.IntegerField()
    jobs_today = serializers.IntegerField()
    pending = serializers.IntegerField()
    running = serializers.IntegerField()
    completed = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    timeout = serializers.IntegerField()


class TopJobTypeSerializer(serializers.Serializer):
    name = serializers.CharField()
    count = serializers.IntegerField()


class DailyActivitySerializer(serializers.Serializer):
    date = serializers.DateField()
    jobs = serializers.IntegerField()
    total_cost = serializers.DecimalField(max_digits=20, decimal_places=6, coerce_to_string=True)


class BrandBreakdownSerializer(serializers.Serializer):
    brand_id = serializers.IntegerField()
    brand_name = serializers.CharField()
    jobs = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=20, decimal_places=6, coerce_to_string=True)


class DashboardSerializer(serializers.Serializer):
    """Documents the dashboard's shape (the view renders the selector's dict directly)."""

    stats = DashboardStatsSerializer()
    recent_jobs = JobSerializer(many=True)
    top_job_types = TopJobTypeSerializer(many=True)
    daily_activity = DailyActivitySerializer(many=True)
    brand_breakdown = BrandBreakdownSerializer(many=True)
    scope = serializers.ChoiceField(choices=["brand", "company"])


STATUS_CHOICES = JobStatus.values
