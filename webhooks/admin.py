from django import forms
from django.contrib import admin

from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.safety import UnsafeTarget, check_target


class EndpointForm(forms.ModelForm):
    class Meta:
        model = WebhookEndpoint
        # No secret: it is never displayed; rotate it through the API.
        fields = ["brand", "url", "description", "events", "is_active"]

    url = forms.URLField(max_length=500, assume_scheme="https")

    def clean_url(self):
        try:
            return check_target(self.cleaned_data["url"])
        except UnsafeTarget as exc:
            raise forms.ValidationError(exc.detail) from None


class DeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    extra = 0
    can_delete = False
    fields = [
        "event",
        "job_ref",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "created_at",
        "delivered_at",
    ]
    readonly_fields = fields
    ordering = ["-id"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ["url", "brand", "is_active", "created_at"]
    list_filter = ["is_active", "brand"]
    search_fields = ["url", "description"]
    form = EndpointForm
    readonly_fields = ["created_by", "created_at", "updated_at"]
    inlines = [DeliveryInline]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "event",
        "job_ref",
        "endpoint",
        "status",
        "attempts",
        "last_status_code",
        "created_at",
    ]
    list_filter = ["status", "event"]
    search_fields = ["job_ref"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]

    def has_add_permission(self, request):
        return False
