from django import forms
from django.contrib import admin

from ai_providers.crypto import encrypt_secret
from ai_providers.models import CapacityLease, CapacityLimit, ModelPrice, Provider, ProviderCredential, ProviderModel
from ai_providers.urls_safety import check_base_url
from business.errors import ApplicationError


class ModelPriceInline(admin.TabularInline):
    model = ModelPrice
    extra = 1
    ordering = ["-effective_from"]


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = ["name", "display_name", "kind", "default_model", "requires_key", "is_active"]
    list_filter = ["kind", "is_active"]


@admin.register(ProviderModel)
class ProviderModelAdmin(admin.ModelAdmin):
    list_display = ["name", "provider", "family", "max_output_tokens", "is_active"]
    list_filter = ["provider", "family", "is_active"]
    search_fields = ["name"]
    inlines = [ModelPriceInline]


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = [
        "model",
        "effective_from",
        "input_per_million",
        "output_per_million",
        "cached_input_per_million",
        "cache_write_5m_per_million",
        "batch_ratio",
    ]
    list_filter = ["model__provider"]
    search_fields = ["model__name"]


class CredentialForm(forms.ModelForm):
    """The key is write-only: typed in, encrypted, never shown back (the field is always empty on display)."""

    api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to keep the stored key.",
    )
    base_url = forms.URLField(required=False, assume_scheme="https", max_length=500)

    class Meta:
        model = ProviderCredential
        fields = ["company", "provider", "base_url", "organization", "is_active"]

    def clean_base_url(self):
        url = self.cleaned_data.get("base_url")
        if not url:
            return ""
        try:
            return check_base_url(url)
        except ApplicationError as exc:
            raise forms.ValidationError(exc.detail) from None

    def clean(self):
        cleaned = super().clean()
        if not self.instance.pk and not cleaned.get("api_key"):
            self.add_error("api_key", "An API key is required for a new credential.")
        return cleaned

    def save(self, commit=True):
        if self.cleaned_data.get("api_key"):
            self.instance.api_key_encrypted = encrypt_secret(self.cleaned_data["api_key"].strip())
        return super().save(commit)


@admin.register(ProviderCredential)
class ProviderCredentialAdmin(admin.ModelAdmin):
    form = CredentialForm
    list_display = [
        "company",
        "provider",
        "base_url",
        "is_active",
        "has_key",
        "last_test_ok",
        "last_tested_at",
    ]
    list_filter = ["provider", "is_active"]
    readonly_fields = ["last_tested_at", "last_test_ok", "last_test_message"]

    @admin.display(boolean=True)
    def has_key(self, obj):
        return obj.has_key


@admin.register(CapacityLimit)
class CapacityLimitAdmin(admin.ModelAdmin):
    """Rate limits per endpoint and model: configured here, learned from the provider's headers (read-only)."""

    list_display = [
        "provider",
        "credential",
        "model",
        "requests_per_minute",
        "tokens_per_minute",
        "concurrent_requests",
        "learned_requests_per_minute",
        "learned_tokens_per_minute",
        "learned_until",
        "calls",
        "rate_limited",
        "waits",
    ]
    list_filter = ["provider"]
    search_fields = ["model"]
    raw_id_fields = ["credential"]
    readonly_fields = [
        "learned_requests_per_minute",
        "learned_tokens_per_minute",
        "learned_until",
        "blocked_until",
        "calls",
        "rate_limited",
        "waits",
        "wait_seconds",
    ]


@admin.register(CapacityLease)
class CapacityLeaseAdmin(admin.ModelAdmin):
    """The calls of the last minute drawn from each limit (read-only: the engine writes them)."""

    list_display = ["holder", "limit", "tokens", "granted_at", "expires_at", "released_at"]
    list_filter = ["limit__provider"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
