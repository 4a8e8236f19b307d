from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.functions import Round
from django.utils import timezone

from ai_providers.money import TokenUsage


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
    # input_tokens counts every prompt token; the cached reads and cache writes are parts of it. reasoning_tokens
    # are a part of output_tokens. (ai_providers/money.py: TokenUsage, the one cost arithmetic.)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    cached_input_tokens = models.PositiveIntegerField(default=0, help_text="prompt tokens read from the cache")
    cache_write_5m_tokens = models.PositiveIntegerField(default=0, help_text="prompt tokens written, 5-minute TTL")
    cache_write_1h_tokens = models.PositiveIntegerField(default=0, help_text="prompt tokens written, 1-hour TTL")
    reasoning_tokens = models.PositiveIntegerField(default=0, help_text="output tokens spent on reasoning")
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
            models.CheckConstraint(
                condition=Q(
                    input_tokens__gte=models.F("cached_input_tokens")
                    + models.F("cache_write_5m_tokens")
                    + models.F("cache_write_1h_tokens"),
                    output_tokens__gte=models.F("reasoning_tokens"),
                ),
                name="usage_token_kinds_within_totals",
            ),
            # Rounded: SQLite keeps decimals as floats, where 0.00015 + 0.00003 != 0.00018 exactly.
            models.CheckConstraint(
                condition=Q(total_cost=Round(models.F("input_cost") + models.F("output_cost"), 6)),
                name="usage_total_cost_sum",
            ),
        ]

    def __str__(self) -> str:
        return f"usage of job {self.job_id}: {self.total_tokens} tokens, ${self.total_cost}"

    @property
    def tokens(self) -> TokenUsage:
        return TokenUsage.of(self)

    def as_api_dict(self) -> dict:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "cache_write_5m_tokens": self.cache_write_5m_tokens,
            "cache_write_1h_tokens": self.cache_write_1h_tokens,
            "reasoning_tokens": self.reasoning_tokens,
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


def default_alert_thresholds() -> list[int]:
    return [50, 80, 100]


def normalise_thresholds(value) -> list[int]:
    """Budget-alert thresholds as stored: whole percentages 1-100, at most 10, each once, ascending.
    Raises ValueError with the reason otherwise."""
    if not isinstance(value, list) or len(value) > 10:
        raise ValueError("alert_thresholds must be a list of at most 10 percentages")
    if any(isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= 100 for t in value):
        raise ValueError("each alert threshold must be a whole percentage from 1 to 100")
    return sorted(set(value))


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
    alert_thresholds = models.JSONField(
        default=default_alert_thresholds,
        blank=True,
        help_text="percentages of a limit (1-100, ascending) whose crossing in a month sends one alert",
    )
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

    def clean(self) -> None:
        try:
            self.alert_thresholds = normalise_thresholds(self.alert_thresholds)
        except ValueError as exc:
            raise ValidationError({"alert_thresholds": str(exc)}) from None


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


class CrossingBasis(models.TextChoices):
    SETTLEMENT = "settlement"  # the settled use alone reached the threshold
    RESERVATION = "reservation"  # the settled use plus what jobs in flight hold reached it, as they were reserved


class QuotaThresholdCrossing(models.Model):
    """One budget alert: the month's use of a quota (settled, or settled plus reserved when a reservation made
    it) reached one of its thresholds. The unique row per (quota, month, threshold) is what makes the alert
    fire once, however many settlements and reservations race past it."""

    quota = models.ForeignKey(Quota, on_delete=models.CASCADE, related_name="threshold_crossings")
    month = models.DateField(help_text="first day of the calendar month")
    threshold = models.PositiveSmallIntegerField(help_text="percent of the limit")
    percent_used = models.DecimalField(max_digits=7, decimal_places=2, help_text="use when it was crossed")
    used_tokens = models.BigIntegerField()
    used_cost_micros = models.BigIntegerField()
    reserved_tokens = models.BigIntegerField(default=0, help_text="held by jobs in flight (basis: reservation)")
    reserved_cost_micros = models.BigIntegerField(default=0)
    basis = models.CharField(max_length=12, choices=CrossingBasis.choices, default=CrossingBasis.SETTLEMENT)
    crossed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-month", "threshold"]
        constraints = [
            models.UniqueConstraint(fields=["quota", "month", "threshold"], name="quotacrossing_once_per_month"),
        ]

    def __str__(self) -> str:
        return f"quota {self.quota_id} crossed {self.threshold}% in {self.month:%Y-%m}"


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
