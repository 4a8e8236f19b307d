from django.contrib import admin

from batches.models import Batch, BatchJob, ProviderBatch


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = ("batch_id", "brand", "job_type", "completion_window", "total_jobs", "created_at", "completed_at")
    list_filter = ("completion_window", "brand")
    search_fields = ("batch_id", "description")
    readonly_fields = ("batch_id", "total_jobs", "created_at", "cancel_requested_at", "completed_at")
    list_select_related = ("brand", "job_type")


@admin.register(ProviderBatch)
class ProviderBatchAdmin(admin.ModelAdmin):
    list_display = ("pk", "company", "provider", "model_name", "status", "provider_batch_id", "request_count")
    list_filter = ("status", "provider")
    search_fields = ("provider_batch_id", "input_file_id", "submission_key")
    # Written by the routing only: an edit here could send a batch twice or lose one.
    readonly_fields = [f.name for f in ProviderBatch._meta.fields]


@admin.register(BatchJob)
class BatchJobAdmin(admin.ModelAdmin):
    list_display = ("job", "batch", "line", "custom_id", "provider_batch", "routed")
    search_fields = ("custom_id", "job__job_id", "batch__batch_id")
    raw_id_fields = ("job", "batch", "provider_batch")
