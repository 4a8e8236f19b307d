from django.contrib.auth.models import AbstractUser
from django.db import models


class Company(models.Model):
    name = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "companies"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Brand(models.Model):
    company = models.ForeignKey(Company, on_delete=models.PROTECT, related_name="brands")
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    # The brand's share when brands compete for the workers (a provider's capacity): weight 2 is served twice
    # as often as weight 1. Claims rotate over brands by it (ai_core.engine.claim).
    capacity_weight = models.PositiveSmallIntegerField(default=1)
    # At most this many of the brand's jobs run at once, across the deployment (null: no limit): the claim skips
    # a brand at its limit (ai_core.statements.BRANDS_AT_LIMIT), its jobs stay pending.
    max_running_jobs = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["company", "name"], name="brand_unique_name_per_company"),
            models.CheckConstraint(condition=models.Q(capacity_weight__gte=1), name="brand_capacity_weight_positive"),
            models.CheckConstraint(
                condition=models.Q(max_running_jobs__isnull=True) | models.Q(max_running_jobs__gte=1),
                name="brand_max_running_jobs_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    """A person or an integration. Belongs to at most one company; acts on brands through memberships."""

    company = models.ForeignKey(Company, on_delete=models.PROTECT, null=True, blank=True, related_name="users")
    # A company admin may act on every brand of their own company, and of no other.
    is_company_admin = models.BooleanField(default=False)


class Membership(models.Model):
    class Role(models.TextChoices):
        MEMBER = "member"
        ADMIN = "admin"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "brand"], name="membership_unique_user_brand")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.brand} ({self.role})"


class LoginFailure(models.Model):
    """One failed login; counted per username and per IP over a window to throttle guessing."""

    username = models.CharField(max_length=150)
    ip = models.GenericIPAddressField(null=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["username", "at"], name="loginfailure_user_at"),
            models.Index(fields=["ip", "at"], name="loginfailure_ip_at"),
        ]

    def __str__(self) -> str:
        return f"{self.username} from {self.ip} at {self.at:%Y-%m-%d %H:%M:%S}"


class ApiKeyScope(models.TextChoices):
    JOBS_READ = "jobs:read"
    JOBS_WRITE = "jobs:write"
    GATEWAY = "gateway"


class ApiKey(models.Model):
    """A brand's service key (`aic_…`): another application acts as the brand, with the key's scopes only.

    Only a hash is stored: the key is shown once, at creation. `prefix` (the 8 characters after `aic_`) finds the
    row; the hash is then compared in constant time.
    """

    brand = models.ForeignKey(Brand, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=8, unique=True)
    key_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="api_keys")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # A quota of its own (ai_usage reserves on it like on any other quota); empty: only the brand's quotas.
    monthly_cost_limit = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["brand", "-created_at"], name="apikey_brand_created")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(monthly_cost_limit__isnull=True) | models.Q(monthly_cost_limit__gte=0),
                name="apikey_cost_limit_not_negative",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} (aic_{self.prefix}…)"
