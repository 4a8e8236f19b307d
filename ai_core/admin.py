from django.contrib import admin

from ai_core.models import AIJob, AIJobEvent, AIJobType, JobDailyStat, WorkerHeartbeat


@admin.register(AIJobType)
class AIJobTypeAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "category",
        "requires_async",
        "default_model",
        "timeout_seconds",
        "max_attempts",
        "is_active",
    ]
    list_filter = ["category", "requires_async", "is_active"]
    search_fields = ["name", "description"]


class AIJobEventInline(admin.TabularInline):
    model = AIJobEvent
    extra = 0
    can_delete = False
    readonly_fields = ["from_status", "to_status", "at", "attempt", "reason", "actor"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(AIJob)
class AIJobAdmin(admin.ModelAdmin):
    list_display = [
        "job_id",
        "job_type",
        "brand",
        "status",
        "priority",
        "progress_percentage",
        "attempts",
        "created_by",
        "created_at",
    ]
    list_filter = ["status", "priority", "job_type", "is_async", "brand__company", "brand", "created_at"]
    search_fields = ["job_id", "description"]
    list_select_related = ["job_type", "brand", "created_by"]
    raw_id_fields = ["created_by"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    # Status and lifecycle fields change only through the workflow, never by editing the row.
    readonly_fields = [
        "job_id",
        "status",
        "progress_percentage",
        "result_data",
        "error_message",
        "error_code",
        "started_at",
        "completed_at",
        "cancelled_at",
        "task_id",
        "attempts",
        "heartbeat_at",
        "available_at",
        "idempotency_key",
        "idempotency_fingerprint",
        "created_at",
        "updated_at",
    ]
    inlines = [AIJobEventInline]

    def has_add_permission(self, request):
        return False


@admin.register(AIJobEvent)
class AIJobEventAdmin(admin.ModelAdmin):
    list_display = ["job", "from_status", "to_status", "attempt", "at", "reason"]
    list_filter = ["to_status", "from_status"]
    search_fields = ["job__job_id", "reason"]
    raw_id_fields = ["job", "actor"]
    show_full_result_count = False


@admin.register(JobDailyStat)
class JobDailyStatAdmin(admin.ModelAdmin):
    list_display = ["brand", "day", "job_type", "status", "jobs", "cost_micros"]
    list_filter = ["status", "job_type", "brand"]
    date_hierarchy = "day"


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    """Read-only: the worker processes write these rows (ai_core.engine.upkeep)."""

    list_display = ["hostname", "pid", "started_at", "last_seen"]
    list_filter = ["hostname"]
    ordering = ["-last_seen"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
