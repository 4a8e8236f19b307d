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

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["company", "name"], name="brand_unique_name_per_company")]

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
