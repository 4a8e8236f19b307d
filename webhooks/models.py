import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

FINAL_EVENTS = ["job.completed", "job.failed", "job.cancelled", "job.timeout"]
QUOTA_THRESHOLD = "quota.threshold"  # a budget alert (ai_usage/alerts.py); endpoints subscribe to it explicitly
BATCH_COMPLETED = "batch.completed"  # the last job of a bulk submission ended (batches app); subscribed explicitly
EVENTS = [*FINAL_EVENTS, QUOTA_THRESHOLD, BATCH_COMPLETED]


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def all_final_events() -> list[str]:
    return list(FINAL_EVENTS)


class WebhookEndpoint(models.Model):
    """A brand's receiver of job events. Every delivery is signed with `secret` (HMAC-SHA256)."""

    brand = models.ForeignKey("business.Brand", on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    # Kept in clear because signing needs it; shown once on creation (and on rotation), never listed.
    secret = models.CharField(max_length=100, default=new_secret)
    events = models.JSONField(default=all_final_events)
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["brand", "is_active"], name="webhook_brand_active")]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One event for one endpoint, and how sending it went (the delivery log)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    job = models.ForeignKey("ai_core.AIJob", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    job_ref = models.CharField(
        max_length=19, help_text="job_id, kept when the job is deleted"
    )  # empty: not a job event
    event = models.CharField(max_length=40)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["endpoint", "-created_at"], name="webhookdelivery_endpoint"),
            models.Index(fields=["next_attempt_at"], name="webhookdelivery_due", condition=models.Q(status="pending")),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.job_ref} → {self.endpoint_id} ({self.status})"
