from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class AIJobUsage(models.Model):
    """Tokens and cost of one finished job, written in the same transaction as its final state.

    Kept when the job is deleted or purged (job becomes NULL) so money totals never shrink.
    """

    job = models.OneToOneField(
        "ai_core.AIJob", on_delete=models.SET_NULL, null=True, blank=True, related_name="usage"
    )
    brand = models.ForeignKey("business.Brand", on_delete=models.PROTECT, related_name="+")
    job_type = models.ForeignKey("ai_core.AIJobType", on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                             related_name="+")
    provider_name = models.CharField(max_length=50)
    model_name = models.CharField(max_length=100)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    input_cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    output_cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    total_cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    execution_time_seconds = models.FloatField(null=True, blank=True)
    success_rate = models.FloatField(default=1.0)
    error_count = models.PositiveIntegerField(default=0)
    job_created_at = models.DateTimeField(help_text="creation time of the job, for daily roll-ups")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["brand", "-created_at"], name="usage_brand_created"),
            models.Index(fields=["brand", "provider_name", "model_name"], name="usage_brand_provider_model"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(total_tokens=models.F("input_tokens") + models.F("output_tokens")),
                                   name="usage_total_tokens_sum"),
            models.CheckConstraint(condition=Q(total_cost=models.F("input_cost") + models.F("output_cost")),
                                   name="usage_total_cost_sum"),
        ]

    def __str__(self) -> str:
        return f"usage of job {self.job_id}: {self.total_tokens} tokens, ${self.total_cost}"
