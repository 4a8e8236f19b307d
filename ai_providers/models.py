"""The provider catalogue (providers, models, dated prices) and per-company credentials (encrypted at rest)."""

from django.db import models
from django.db.models import Q
from django.utils import timezone


class ProviderKind(models.TextChoices):
    """Which client speaks to the provider: several providers may share a wire format (vLLM speaks OpenAI)."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    ECHO = "echo"


class Provider(models.Model):
    name = models.SlugField(max_length=50, unique=True)
    display_name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=ProviderKind.choices)
    default_model = models.CharField(max_length=100, blank=True)
    # Model names starting with one of these belong to this provider even when not in the catalogue.
    model_prefixes = models.JSONField(default=list, blank=True)
    requires_key = models.BooleanField(default=True)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.display_name


class ModelFamily(models.TextChoices):
    STANDARD = "standard"  # temperature, max_tokens, system role
    REASONING = "reasoning"  # OpenAI o-series: reasoning_effort, max_completion_tokens, developer role


class ProviderModel(models.Model):
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="models")
    name = models.CharField(max_length=100, unique=True)
    family = models.CharField(max_length=20, choices=ModelFamily.choices, default=ModelFamily.STANDARD)
    capabilities = models.JSONField(default=list, blank=True, help_text='e.g. ["chat", "streaming", "json", "tools"]')
    context_window = models.PositiveIntegerField(default=128_000)
    max_output_tokens = models.PositiveIntegerField(default=16_384)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["provider__name", "name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_reasoning(self) -> bool:
        return self.family == ModelFamily.REASONING


def _rate(help_text: str) -> models.DecimalField:
    return models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True, help_text=help_text)


# The optional rates: null when the provider has no such rate (the arithmetic is ai_providers/money.py).
OPTIONAL_RATES = [
    "cached_input_per_million",
    "cache_write_5m_per_million",
    "cache_write_1h_per_million",
    "long_context_input_per_million",
    "long_context_output_per_million",
]


class ModelPrice(models.Model):
    """USD per million tokens from `effective_from` on, until the model's next price. Past usage keeps its price.

    Every kind of token has its rate here, dated together: a provider's price change is one new row.
    """

    model = models.ForeignKey(ProviderModel, on_delete=models.CASCADE, related_name="prices")
    effective_from = models.DateTimeField(default=timezone.now)
    input_per_million = models.DecimalField(max_digits=12, decimal_places=6)
    output_per_million = models.DecimalField(max_digits=12, decimal_places=6)
    cached_input_per_million = _rate("prompt tokens read from the provider's cache; empty: the input rate")
    cache_write_5m_per_million = _rate("prompt tokens written to a 5-minute cache; empty: the input rate")
    cache_write_1h_per_million = _rate("prompt tokens written to a 1-hour cache; empty: the input rate")
    batch_ratio = models.DecimalField(
        max_digits=5,
        decimal_places=4,
        null=True,
        blank=True,
        help_text="the Batch API's price as a fraction of every rate (0.5 = half); empty: no batch API",
    )
    long_context_threshold_tokens = models.PositiveIntegerField(
        null=True, blank=True, help_text="above this many prompt tokens the long-context rates apply"
    )
    long_context_input_per_million = _rate("input rate above the threshold (cache rates scale with it)")
    long_context_output_per_million = _rate("output rate above the threshold")

    class Meta:
        ordering = ["model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["model", "effective_from"], name="modelprice_one_per_instant"),
            models.CheckConstraint(
                condition=Q(input_per_million__gte=0, output_per_million__gte=0),
                name="modelprice_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(*[Q(**{f"{rate}__isnull": True}) | Q(**{f"{rate}__gte": 0}) for rate in OPTIONAL_RATES]),
                name="modelprice_optional_rates_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(batch_ratio__isnull=True) | Q(batch_ratio__gt=0, batch_ratio__lte=1),
                name="modelprice_batch_ratio_fraction",
            ),
            # A long-context tier is a threshold and both its rates, or nothing.
            models.CheckConstraint(
                condition=Q(
                    long_context_threshold_tokens__isnull=True,
                    long_context_input_per_million__isnull=True,
                    long_context_output_per_million__isnull=True,
                )
                | Q(
                    long_context_threshold_tokens__isnull=False,
                    long_context_input_per_million__isnull=False,
                    long_context_output_per_million__isnull=False,
                ),
                name="modelprice_long_context_complete",
            ),
        ]

    def __str__(self) -> str:
        prices = f"${self.input_per_million}/${self.output_per_million}"
        return f"{self.model}: {prices} per 1M from {self.effective_from:%Y-%m-%d}"


class ProviderCredential(models.Model):
    """A company's own key for a provider. The key is stored only as a Fernet token and never leaves the server."""

    company = models.ForeignKey("business.Company", on_delete=models.CASCADE, related_name="provider_credentials")
    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="credentials")
    api_key_encrypted = models.TextField(editable=False)
    base_url = models.URLField(max_length=500, blank=True)
    organization = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True)
    last_tested_at = models.DateTimeField(null=True, blank=True)
    last_test_ok = models.BooleanField(null=True, blank=True)
    last_test_message = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider__name"]
        constraints = [
            models.UniqueConstraint(fields=["company", "provider"], name="credential_one_per_company_provider"),
        ]

    def __str__(self) -> str:
        return f"{self.company} / {self.provider}"

    def __repr__(self) -> str:
        return f"<ProviderCredential {self.pk} {self.company_id}/{self.provider_id}>"

    @property
    def has_key(self) -> bool:
        return bool(self.api_key_encrypted)


class CapacityLimit(models.Model):
    """The rate limits of one provider endpoint for one model, and the state every process shares to keep them.

    An endpoint is the environment's (credential empty) or a company's own credential. The limits are
    configured here (model empty: for each model of the endpoint, counted per model) or learned from the
    provider's response headers (learned_*, until learned_until: a provider that stops sending them stops
    limiting us). Calls draw leases (CapacityLease) under a lock on this row: ai_providers.capacity.
    """

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="capacity_limits")
    credential = models.ForeignKey(
        ProviderCredential, on_delete=models.CASCADE, null=True, blank=True, related_name="capacity_limits"
    )
    model = models.CharField(max_length=100, blank=True, help_text="empty: each model of the endpoint")
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True)
    concurrent_requests = models.PositiveIntegerField(null=True, blank=True)
    learned_requests_per_minute = models.PositiveIntegerField(null=True, blank=True, editable=False)
    learned_tokens_per_minute = models.PositiveIntegerField(null=True, blank=True, editable=False)
    learned_until = models.DateTimeField(null=True, blank=True, editable=False)
    # The provider asked us to stop until then (Retry-After, or no requests remaining until the reset).
    blocked_until = models.DateTimeField(null=True, blank=True, editable=False)
    # The wake-up pacer: wake-ups for waiting jobs are scheduled up to here, one per free slot.
    paced_until = models.DateTimeField(null=True, blank=True, editable=False)
    waited_at = models.DateTimeField(null=True, blank=True, editable=False)  # the last time a call had to wait
    # Counters since the row was created (/metrics exports them; /ai/providers/ shows their ratios).
    calls = models.BigIntegerField(default=0, editable=False)
    rate_limited = models.BigIntegerField(default=0, editable=False)  # calls the provider answered 429
    waits = models.BigIntegerField(default=0, editable=False)  # times a job went back to wait for capacity
    wait_seconds = models.FloatField(default=0, editable=False)  # the waits' total length, as announced
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider__name", "model"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "model"], condition=Q(credential__isnull=True), name="capacity_one_per_env_model"
            ),
            models.UniqueConstraint(
                fields=["provider", "credential", "model"],
                condition=Q(credential__isnull=False),
                name="capacity_one_per_credential_model",
            ),
        ]

    def __str__(self) -> str:
        endpoint = f"credential {self.credential_id}" if self.credential_id else "environment"
        return f"{self.provider_id} ({endpoint}) {self.model or '*'}"


class CapacityLease(models.Model):
    """One call drawn from a CapacityLimit: it counts in the request and token windows from granted_at, and
    holds a concurrent slot until released. Its holder renews expires_at with the job's heartbeat, so the slot
    of a process killed mid-call comes back when the lease expires."""

    limit = models.ForeignKey(CapacityLimit, on_delete=models.CASCADE, related_name="leases")
    holder = models.CharField(max_length=100)
    tokens = models.PositiveIntegerField(default=0)
    granted_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["limit", "granted_at"], name="capacitylease_window")]

    def __str__(self) -> str:
        return f"{self.holder} on {self.limit_id}"
