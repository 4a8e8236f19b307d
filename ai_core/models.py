import secrets
import string

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

JOB_ID_ALPHABET = string.ascii_lowercase + string.digits


def random_id(length: int = 12) -> str:
    """`length` characters drawn uniformly and independently from JOB_ID_ALPHABET, as secrets.choice would
    draw them, from ONE draw of the OS's randomness: a choice per character cost a syscall each, a quarter of
    a 10 000-job bulk creation."""
    base = len(JOB_ID_ALPHABET)
    number = secrets.randbelow(base**length)
    chars = []
    for _ in range(length):
        number, digit = divmod(number, base)
        chars.append(JOB_ID_ALPHABET[digit])
    return "".join(chars)


def new_job_id() -> str:
    return "ai_job_" + random_id()


class JobStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"


FINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMEOUT})
# A fixed order for constraints: a frozenset's order changes with the hash seed, and so would the migrations.
FINAL_STATUS_VALUES = sorted(s.value for s in FINAL_STATUSES)


class JobPriority(models.TextChoices):
    """Declared from the lowest rank to the highest: PRIORITY_RANK (and the claim's order) follow it."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


# low 0 < normal 1 < high 2 < urgent 3: the one statement of what "more urgent" means.
PRIORITY_RANK = {priority.value: rank for rank, priority in enumerate(JobPriority)}


class CompletionWindow(models.TextChoices):
    """When a job's answer is wanted: a job's `input_data.completion_window`, else its type's default, or a
    batch's window."""

    NOW = "now"  # the normal path: workers run the jobs as soon as they can
    DAY = "24h"  # through the provider's Batch API when it has one (the batches app), at its batch price


class AIJobType(models.Model):
    class Category(models.TextChoices):
        CHAT = "chat"
        ASSISTANT = "assistant"
        UPLOAD = "upload"
        ANALYSIS = "analysis"
        GENERATION = "generation"

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=20, choices=Category.choices)
    estimated_duration_seconds = models.PositiveIntegerField(default=10)
    requires_async = models.BooleanField(default=False)
    default_model = models.CharField(max_length=100, default="echo-1")
    timeout_seconds = models.PositiveIntegerField(default=120)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    input_schema = models.JSONField(default=dict, blank=True, help_text="JSON Schema that input_data must match")
    default_completion_window = models.CharField(
        max_length=3,
        choices=CompletionWindow.choices,
        default=CompletionWindow.NOW,
        help_text="a job's completion window when its input_data names none (24h: through a provider Batch API)",
    )
    fallback_models = models.JSONField(
        default=list,
        blank=True,
        help_text="catalogue models a job of this type goes on with, in order, when its model's provider is down "
        "(a job's input_data.fallback_models replaces this list)",
    )
    is_active = models.BooleanField(default=True)
    max_queue_seconds = models.PositiveIntegerField(
        default=24 * 3600,
        help_text="how long a job may wait for provider capacity after its creation before it ends timeout "
        "(CAPACITY_WAIT_EXCEEDED)",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(max_attempts__gte=1), name="jobtype_max_attempts_positive"),
            models.CheckConstraint(condition=Q(timeout_seconds__gte=1), name="jobtype_timeout_positive"),
        ]

    def __str__(self) -> str:
        return self.name


class AIJob(models.Model):
    job_id = models.CharField(max_length=19, unique=True, default=new_job_id, editable=False)
    job_type = models.ForeignKey(AIJobType, on_delete=models.PROTECT, related_name="jobs")
    # No index of its own: every job index leads with the brand (one index fewer to maintain on each write).
    brand = models.ForeignKey("business.Brand", on_delete=models.PROTECT, related_name="ai_jobs", db_index=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="ai_jobs"
    )

    # The brand API key the job was submitted with (gateway calls, key-authenticated /ai/jobs/), if any.
    api_key = models.ForeignKey(
        "business.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False
    )

    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.PENDING)
    priority = models.CharField(max_length=10, choices=JobPriority.choices, default=JobPriority.NORMAL)
    progress_percentage = models.PositiveSmallIntegerField(default=0)

    input_data = models.JSONField(default=dict)
    result_data = models.JSONField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    error_code = models.CharField(max_length=64, blank=True)

    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    task_id = models.CharField(max_length=255, blank=True)
    is_async = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Earliest time a pending job may be claimed (backoff between attempts).
    available_at = models.DateTimeField(default=timezone.now)
    # The fallback model (and its provider) the job switched to when its own model's provider was down ("" while
    # on its own model), and the attempts spent on the models before it: each model gets the type's max_attempts.
    fallback_model = models.CharField(max_length=100, blank=True, default="", db_default="")
    fallback_provider = models.CharField(max_length=50, blank=True, default="", db_default="")
    fallback_attempts = models.PositiveSmallIntegerField(default=0, db_default=0)
    # Set while the job waits for provider capacity: {"reason", "provider", "model", "until"}; cleared on claim.
    waiting = models.JSONField(null=True, blank=True)

    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    idempotency_fingerprint = models.CharField(max_length=64, blank=True)

    description = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "created_at"], name="aijob_status_created"),
            models.Index(fields=["brand", "-created_at", "-id"], name="aijob_brand_created"),
            models.Index(fields=["brand", "status", "-created_at", "-id"], name="aijob_brand_status_created"),
            models.Index(fields=["brand", "job_type", "-created_at"], name="aijob_brand_type_created"),
            models.Index(fields=["brand", "created_by", "-created_at"], name="aijob_brand_user_created"),
            models.Index(fields=["available_at"], name="aijob_pending_available", condition=Q(status="pending")),
            # The engine's claim: per priority, brand by brand, oldest first (ai_core.engine.claim).
            models.Index(
                fields=["priority", "brand", "created_at", "id"],
                name="aijob_pending_claim",
                condition=Q(status="pending"),
            ),
            # The reaper's running jobs of a type (ai_core.engine.upkeep.running_to_reap), by columns set at claim
            # and never by a beat: an index on heartbeat_at (or progress_percentage, updated_at) would be rewritten
            # by every beat, where a beat that changes no indexed column is a heap-only (HOT) update that writes
            # one heap page and no index (ai_core/tests/engine/test_hot_beats.py).
            models.Index(
                fields=["job_type", "started_at"], name="aijob_running_started", condition=Q(status="running")
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(progress_percentage__lte=100), name="aijob_progress_0_100"),
            models.CheckConstraint(
                condition=Q(status__in=FINAL_STATUS_VALUES, completed_at__isnull=False)
                | (~Q(status__in=FINAL_STATUS_VALUES) & Q(completed_at__isnull=True)),
                name="aijob_completed_at_iff_final",
            ),
            models.CheckConstraint(
                condition=Q(status="cancelled", cancelled_at__isnull=False)
                | (~Q(status="cancelled") & Q(cancelled_at__isnull=True)),
                name="aijob_cancelled_at_iff_cancelled",
            ),
            models.CheckConstraint(
                condition=~Q(status="running") | Q(started_at__isnull=False, attempts__gte=1),
                name="aijob_running_has_started",
            ),
            models.UniqueConstraint(
                fields=["brand", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="aijob_unique_idempotency_key_per_brand",
            ),
        ]

    def __str__(self) -> str:
        return self.job_id

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    def primary_model(self) -> str:
        """The model the job asked for: its input's `model`, else its type's default."""
        model = self.input_data.get("model") if isinstance(self.input_data, dict) else None
        return model if isinstance(model, str) and model else self.job_type.default_model

    def current_model(self) -> str:
        """The model the job runs (or ran) on: the fallback it switched to, else the one it asked for."""
        return self.fallback_model or self.primary_model()

    def fallback_models(self) -> list:
        """The models the job may go on with, in order: its input's `fallback_models` when it names them (an
        empty list: none), else its type's."""
        data = self.input_data if isinstance(self.input_data, dict) else {}
        models_ = data["fallback_models"] if "fallback_models" in data else self.job_type.fallback_models
        return list(models_ or [])

    def attempts_on_current_model(self, attempt: int) -> int:
        """How many of the job's attempts up to `attempt` ran on its current model."""
        return attempt - self.fallback_attempts

    @property
    def execution_time_seconds(self) -> float | None:
        if self.started_at and self.completed_at:
            return round((self.completed_at - self.started_at).total_seconds(), 3)
        return None


class AIJobEvent(models.Model):
    """Append-only: one row per status transition (from_status is "" for the creation)."""

    job = models.ForeignKey(AIJob, on_delete=models.CASCADE, related_name="events")
    from_status = models.CharField(max_length=10, blank=True)
    to_status = models.CharField(max_length=10, choices=JobStatus.choices)
    at = models.DateTimeField(default=timezone.now)
    attempt = models.PositiveSmallIntegerField(default=0)
    reason = models.CharField(max_length=500, blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["job", "id"], name="aijobevent_job_id")]

    def __str__(self) -> str:
        return f"{self.job_id}: {self.from_status or '∅'} → {self.to_status}"


class JobDailyStat(models.Model):
    """Roll-up written in the same transaction as every job write: jobs and cost per brand, day, type, status.

    The dashboard and list counts read these few thousand rows instead of scanning a million jobs.
    `day` is the job's creation date (settings.TIME_ZONE).

    Append-only: each write adds a row of deltas (+1 pending, -1 pending +1 running, …) and readers SUM per
    key. Updating one row per key in place made every claim and end of a brand's jobs queue on that row's
    lock through each other's commit; the engine's upkeep folds a key's rows back into one
    (workflow.stats_compact), so the table stays a few rows per key.
    """

    brand = models.ForeignKey("business.Brand", on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    job_type = models.ForeignKey(AIJobType, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=10, choices=JobStatus.choices)
    jobs = models.BigIntegerField(default=0)
    # Money as an integer count of millionths of a dollar: exact on SQLite too (its decimals are floats).
    cost_micros = models.BigIntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(fields=["brand", "day", "job_type", "status"], name="jobdailystat_key"),
            models.Index(fields=["brand", "status"], name="jobdailystat_brand_status"),
            # The dashboard's totals per (brand, type, status) read this index only (PostgreSQL INCLUDE),
            # already in group order: a company's 20 brands x a year of days stay a short index walk.
            models.Index(
                fields=["brand", "job_type", "status"], include=["jobs", "cost_micros"], name="jobdailystat_totals"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.brand_id} {self.day} {self.job_type_id} {self.status}: {self.jobs} jobs"


class WorkerHeartbeat(models.Model):
    """One row per live worker process, stamped by its upkeep thread every round (AICORE_SWEEP_INTERVAL_MS):
    how any API process knows, from the database, whether some worker is alive (/readyz, /metrics).
    Never written per job."""

    hostname = models.CharField(max_length=255)  # the Celery node name, name@host
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["hostname", "pid"], name="workerheartbeat_process")]

    def __str__(self) -> str:
        return f"{self.hostname} pid {self.pid}, last seen {self.last_seen:%Y-%m-%d %H:%M:%S}"


class ProviderCircuit(models.Model):
    """The engine's circuit breaker of one provider, shared by every worker process (ai_core.engine.circuit):
    consecutive transient failures of its calls (5xx, timeouts, network; not 429s), and until when it is open.

    While it is open, a job that names fallback models goes straight to the next one instead of calling the
    provider; a job without fallbacks still calls it (as it would have). One successful call closes it."""

    provider = models.CharField(max_length=50, unique=True)
    failures = models.PositiveIntegerField(default=0)
    opened_until = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)

    def __str__(self) -> str:
        return f"{self.provider}: {self.failures} failures"
