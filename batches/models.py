import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from ai_core.models import AIJob, CompletionWindow, random_id


def new_batch_id() -> str:
    return "batch_" + random_id()


def new_submission_key() -> str:
    return "aicore_" + secrets.token_hex(16)


# CompletionWindow is defined with the jobs (a single job has one too); imported from here by the batches code.


class Batch(models.Model):
    """A bulk submission: many ordinary jobs of one type, followed and cancelled together.

    Its status and counts are read from its jobs (selectors.batch_summaries); `completed_at` is set once, when
    the last of its jobs became final (and `batch.completed` is announced)."""

    batch_id = models.CharField(max_length=18, unique=True, default=new_batch_id, editable=False)
    brand = models.ForeignKey("business.Brand", on_delete=models.CASCADE, related_name="ai_batches", db_index=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    job_type = models.ForeignKey("ai_core.AIJobType", on_delete=models.PROTECT, related_name="+")
    completion_window = models.CharField(max_length=3, choices=CompletionWindow.choices, default=CompletionWindow.NOW)
    description = models.TextField(blank=True, max_length=2000)
    total_jobs = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["brand", "-created_at", "-id"], name="batch_brand_created"),
            models.Index(fields=["created_at"], name="batch_open", condition=Q(completed_at__isnull=True)),
        ]
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return self.batch_id


class ProviderBatchStatus(models.TextChoices):
    # Recorded before and after each provider step, so a worker dying between two steps resumes at the right one.
    PREPARING = "preparing"  # jobs assigned, nothing sent yet
    UPLOADED = "uploaded"  # OpenAI: the input file exists (input_file_id); the batch is not created yet
    # Creating the provider batch (one per provider at a time): a crash here is resolved by find() before creating.
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"  # the provider batch exists (provider_batch_id); polled
    ENDED = "ended"  # results written to the jobs
    FAILED = "failed"  # the provider refused, failed or expired it; its unfinished jobs were handled
    CANCELLED = "cancelled"  # every job of it was cancelled; the provider batch was cancelled


class ProviderBatch(models.Model):
    """One batch sent to a provider's Batch API: jobs of one company, provider and model."""

    company = models.ForeignKey("business.Company", on_delete=models.CASCADE, related_name="+")
    provider = models.ForeignKey("ai_providers.Provider", on_delete=models.PROTECT, related_name="+")
    model_name = models.CharField(max_length=100)
    status = models.CharField(max_length=12, choices=ProviderBatchStatus.choices, default=ProviderBatchStatus.PREPARING)
    # Idempotency of the submission: the key sent as the provider batch's metadata, and what each step returned.
    submission_key = models.CharField(max_length=40, unique=True, default=new_submission_key, editable=False)
    input_file_id = models.CharField(max_length=100, blank=True)
    provider_batch_id = models.CharField(max_length=100, blank=True)
    provider_status = models.CharField(max_length=30, blank=True)
    request_count = models.PositiveIntegerField(default=0)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    submitted_at = models.DateTimeField(null=True, blank=True)
    polled_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # When the (last) attempt to create the provider batch began: what find() looks from after a crash.
    submit_started_at = models.DateTimeField(null=True, blank=True)
    # One worker drives a provider batch at a time (a compare-and-set on this); a dead one's lease runs out.
    leased_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "polled_at"], name="providerbatch_open", condition=~Q(status="ended")),
        ]
        constraints = [
            # One creation in flight per provider: a batch created by a worker that died before noting its id
            # is then the one batch created since its recorded start that no record knows (Anthropic's Message
            # Batches carry no metadata to find it by).
            models.UniqueConstraint(
                fields=["provider"], condition=Q(status="submitting"), name="providerbatch_one_submitting"
            ),
        ]
        verbose_name_plural = "provider batches"

    def __str__(self) -> str:
        return f"{self.provider_id}/{self.model_name} {self.provider_batch_id or self.submission_key} ({self.status})"


class BatchJob(models.Model):
    """A job of a batch, or a single routed job (the link lives here: ai_core's job knows nothing of batches).

    A single job of `POST /ai/jobs/` with a 24 h window has a link without batch: what the routing reads."""

    job = models.OneToOneField(AIJob, on_delete=models.CASCADE, primary_key=True, related_name="batch_link")
    batch = models.ForeignKey(
        Batch, on_delete=models.CASCADE, null=True, blank=True, related_name="links", help_text="null: a single job"
    )
    line = models.PositiveIntegerField(help_text="the job's index in the submission (0-based)")
    custom_id = models.CharField(max_length=64, blank=True)
    # 24 h jobs: the provider batch that carries the job's current attempt (null: not sent yet / normal path).
    provider_batch = models.ForeignKey(
        ProviderBatch, on_delete=models.SET_NULL, null=True, blank=True, related_name="links"
    )
    routed = models.BooleanField(default=False, help_text="waiting for or inside a provider batch")
    # Where a routed job goes (the accumulation key with its company): known at creation, not re-derived.
    provider = models.ForeignKey(
        "ai_providers.Provider", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    model_name = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["batch", "line"]
        indexes = [
            models.Index(fields=["batch", "line"], name="batchjob_batch_line"),
            models.Index(fields=["provider_batch"], name="batchjob_provider_batch"),
            models.Index(fields=["batch"], name="batchjob_waiting", condition=Q(routed=True, provider_batch=None)),
        ]

    def __str__(self) -> str:
        return f"{self.batch_id or 'single'}#{self.line}"
