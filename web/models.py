from django.conf import settings
from django.db import models


class ConsolePreference(models.Model):
    """What the web console remembers of a user across sessions and logins: the brand they worked on last."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="console_preference")
    # SET_NULL: a deleted brand falls back to the user's first brand.
    last_brand = models.ForeignKey("business.Brand", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user} → {self.last_brand}"
