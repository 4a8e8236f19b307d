from django import forms
from django.contrib import admin, messages

from ai_core import services
from ai_core.models import AIJob, AIJobEvent, AIJobType, JobDailyStat, JobStatus, ProviderCircuit, WorkerHeartbeat
from business.errors import ApplicationError


class AIJobTypeForm(forms.ModelForm):
    class Meta:
        model = AIJobType
        fields = ["default_model", "fallback_models"]  # the admin adds the others

    def clean(self):
        """The type's fallback models, checked as a request's are (services.fallback_models_clean)."""
        data = super().clean()
        try:
            services.fallback_models_clean(data.get("fallback_models") or [], primary=data.get("default_model") or "")
        except ApplicationError as exc:
            self.add_error("fallback_models", exc.detail)
        return data


@admin.register(AIJobType)
class AIJobTypeAdmin(admin.ModelAdmin):
    form = AIJobTypeForm
    list_display = [
        "name",
        "category",
        "requires_async",
        "default_model",
        "default_completion_window",
        "timeout_seconds",
        "max_attempts",
        "fallback_models",
        "max_queue_seconds",
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
    list_per_page = 50
    list_select_related = ["job_type", "brand", "created_by"]
    raw_id_fields = ["created_by"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    inlines = [AIJobEventInline]
    # What the API lets a client change on a pending job; every other field is the workflow's (status,
    # timestamps, attempts) or would leave the roll-up counts and quotas behind (brand, type, creator).
    editable_fields = ("description", "priority", "input_data")

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in AIJob._meta.concrete_fields if field.name not in self.editable_fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        """Only a pending job may be edited (description, priority, input): once a worker has it, or it has
        ended, the job belongs to the workflow and the admin shows it read-only."""
        if obj is not None and obj.status != JobStatus.PENDING:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.status == JobStatus.RUNNING:
            return False  # cancel it first, as the API says
        return super().has_delete_permission(request, obj)

    def delete_model(self, request, obj):
        # job_delete, not a plain DELETE: the roll-up the API counts from moves with it, and a pending job's
        # quota reservation is released.
        services.job_delete(job=obj)

    def delete_queryset(self, request, queryset):
        for job in queryset:
            try:
                services.job_delete(job=job)
            except ApplicationError as exc:
                self.message_user(request, f"{job.job_id} not deleted: {exc.detail}", level=messages.ERROR)

    def save_model(self, request, obj, form, change):
        """Through job_update, as the API does: the input is validated against the job type and the write
        is a compare-and-set on the status, so a job a worker claimed meanwhile is not overwritten."""
        try:
            services.job_update(job=obj, data={field: form.cleaned_data[field] for field in form.changed_data})
        except ApplicationError as exc:
            self.message_user(request, f"Not saved: {exc.detail} ({exc.error_code})", level=messages.ERROR)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the workflow only: an edit would contradict the jobs they describe."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AIJobEvent)
class AIJobEventAdmin(ReadOnlyAdmin):
    list_display = ["job", "from_status", "to_status", "attempt", "at", "reason"]
    list_filter = ["to_status", "from_status"]
    search_fields = ["job__job_id", "reason"]
    raw_id_fields = ["job", "actor"]
    show_full_result_count = False


@admin.register(JobDailyStat)
class JobDailyStatAdmin(ReadOnlyAdmin):
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


@admin.register(ProviderCircuit)
class ProviderCircuitAdmin(admin.ModelAdmin):
    """The engine's circuit breakers: read them, or close one by hand (failures 0, no open-until)."""

    list_display = ["provider", "failures", "opened_until", "last_failure_at", "last_error"]
    list_filter = ["provider", "opened_until"]
    readonly_fields = ["provider", "last_failure_at", "last_error"]
