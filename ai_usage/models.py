from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Round
from django.utils import timezone


class AIJobUsage(models.Model):
    """Tokens and cost of one finished job, written in the same transaction as its final state.

    Kept when the job is deleted or purged (job becomes NULL) so money totals never shrink.
    """

    job = models.OneToOneField("ai_core.AIJob", on_delete=models.SET_NULL, null=True, blank=True, related_name="usage")
    brand = models.ForeignKey("business.Brand", on_delete=models.PROTECT, related_name="+")
    job_type = models.ForeignKey("ai_core.AIJobType", on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
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
    final_status = models.CharField(max_length=10, blank=True, help_text="the job's final status")
    priced_at = models.DateTimeField(null=True, blank=True, help_text="the instant whose prices were applied")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["brand", "-created_at"], name="usage_brand_created"),
            models.Index(fields=["brand", "provider_name", "model_name"], name="usage_brand_provider_model"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(total_tokens=models.F("input_tokens") + models.F("output_tokens")),
                name="usage_total_tokens_sum",
            ),
            # Rounded: SQLite keeps decimals as floats, where 0.00015 + 0.00003 != 0.00018 exactly.
            models.CheckConstraint(
                condition=Q(total_cost=Round(models.F("input_cost") + models.F("output_cost"), 6)),
                name="usage_total_cost_sum",
            ),
        ]

    def __str__(self) -> str:
        return f"usage of job {self.job_id}: {self.total_tokens} tokens, ${self.total_cost}"

    def as_api_dict(self) -> dict:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "input_cost": str(self.input_cost),
            "output_cost": str(self.output_cost),
            "total_cost": str(self.total_cost),
            "execution_time_seconds": self.execution_time_seconds,
            "provider_name": self.provider_name,
            "model_name": self.model_name,
            "success_rate": self.success_rate,
            "error_count": self.error_count,
            "final_status": self.final_status,
        }


class Quota(models.Model):
    """Monthly token and/or cost limits. Scope: one brand, or (brand empty) every brand of the company together;
    one provider, or (provider empty) all of them. A job must fit every quota that applies to it.
    """

    company = models.ForeignKey("business.Company", on_delete=models.CASCADE, related_name="quotas")
    brand = models.ForeignKey(
        "business.Brand",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="quotas",
        help_text="empty: company-wide",
    )
    provider = models.ForeignKey(
        "ai_providers.Provider",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="quotas",
        help_text="empty: every provider",
    )
    # A key's own limit (ApiKey.monthly_cost_limit, kept in step by quotas_applicable): it applies to that key's jobs.
    api_key = models.OneToOneField(
        "business.ApiKey", on_delete=models.CASCADE, null=True, blank=True, related_name="quota"
    )
    monthly_token_limit = models.BigIntegerField(null=True, blank=True)
    monthly_cost_limit = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(monthly_token_limit__isnull=False) | Q(monthly_cost_limit__isnull=False),
                name="quota_has_a_limit",
            ),
            models.CheckConstraint(
                condition=Q(monthly_token_limit__isnull=True) | Q(monthly_token_limit__gte=0),
                name="quota_token_limit_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(monthly_cost_limit__isnull=True) | Q(monthly_cost_limit__gte=0),
                name="quota_cost_limit_not_negative",
            ),
        ]
        indexes = [models.Index(fields=["company", "is_active"], name="quota_company_active")]

    def __str__(self) -> str:
        scope = self.brand.name if self.brand_id else "company-wide"
        return f"quota {self.pk} ({scope}{', ' + self.provider.name if self.provider_id else ''})"


class QuotaPeriod(models.Model):
    """The counters of one quota for one calendar month. Money in integer micro-dollars (exact on SQLite).

    used + reserved never exceeds the limit: reservations only grow in a conditional UPDATE that checks it.
    """

    quota = models.ForeignKey(Quota, on_delete=models.CASCADE, related_name="periods")
    month = models.DateField(help_text="first day of the calendar month")
    used_tokens = models.BigIntegerField(default=0)
    reserved_tokens = models.BigIntegerField(default=0)
    used_cost_micros = models.BigIntegerField(default=0)
    reserved_cost_micros = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-month"]
        constraints = [
            models.UniqueConstraint(fields=["quota", "month"], name="quotaperiod_one_per_month"),
            models.CheckConstraint(
                condition=Q(
                    reserved_tokens__gte=0, reserved_cost_micros__gte=0, used_tokens__gte=0, used_cost_micros__gte=0
                ),
                name="quotaperiod_counters_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"quota {self.quota_id} in {self.month:%Y-%m}"


class ReservationState(models.TextChoices):
    RESERVED = "reserved"
    SETTLED = "settled"
    RELEASED = "released"


class QuotaReservation(models.Model):
    """What one job holds on one quota period: reserved at submit, then settled or released exactly once."""

    job = models.ForeignKey(
        "ai_core.AIJob", on_delete=models.SET_NULL, null=True, blank=True, related_name="quota_reservations"
    )
    period = models.ForeignKey(QuotaPeriod, on_delete=models.CASCADE, related_name="reservations")
    tokens = models.BigIntegerField()
    cost_micros = models.BigIntegerField()
    state = models.CharField(max_length=10, choices=ReservationState.choices, default=ReservationState.RESERVED)
    settled_tokens = models.BigIntegerField(default=0)
    settled_cost_micros = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["job", "period"], name="reservation_one_per_job_period")]
        indexes = [models.Index(fields=["job", "state"], name="reservation_job_state")]

    def __str__(self) -> str:
        return f"reservation of job {self.job_id} on period {self.period_id}: {self.state}"
