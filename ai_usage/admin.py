from django.contrib import admin

from ai_usage.models import AIJobUsage, Quota, QuotaPeriod, QuotaReservation, QuotaThresholdCrossing


@admin.register(AIJobUsage)
class AIJobUsageAdmin(admin.ModelAdmin):
    list_display = [
        "job",
        "brand",
        "provider_name",
        "model_name",
        "total_tokens",
        "total_cost",
        "success_rate",
        "created_at",
    ]
    list_filter = ["provider_name", "model_name", "brand", "success_rate"]
    search_fields = ["job__job_id", "model_name"]
    raw_id_fields = ["job", "user"]


class QuotaPeriodInline(admin.TabularInline):
    model = QuotaPeriod
    extra = 0
    readonly_fields = ["month", "used_tokens", "reserved_tokens", "used_cost_micros", "reserved_cost_micros"]
    can_delete = False


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin):
    list_display = ["id", "company", "brand", "provider", "monthly_token_limit", "monthly_cost_limit", "is_active"]
    list_filter = ["company", "provider", "is_active"]
    inlines = [QuotaPeriodInline]


@admin.register(QuotaThresholdCrossing)
class QuotaThresholdCrossingAdmin(admin.ModelAdmin):
    """Budget alerts, as recorded: read-only (the row is what made the alert fire once)."""

    list_display = ["quota", "month", "threshold", "percent_used", "crossed_at"]
    list_filter = ["month", "threshold"]
    raw_id_fields = ["quota"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(QuotaPeriod)
class QuotaPeriodAdmin(admin.ModelAdmin):
    list_display = ["quota", "month", "used_tokens", "reserved_tokens", "used_cost_micros", "reserved_cost_micros"]
    list_filter = ["month"]
    raw_id_fields = ["quota"]


@admin.register(QuotaReservation)
class QuotaReservationAdmin(admin.ModelAdmin):
    list_display = ["job", "period", "state", "tokens", "cost_micros", "created_at", "closed_at"]
    list_filter = ["state", "created_at"]
    raw_id_fields = ["job", "period"]
