from django.contrib import admin

from ai_usage.models import AIJobUsage


@admin.register(AIJobUsage)
class AIJobUsageAdmin(admin.ModelAdmin):
    list_display = ["job", "brand", "provider_name", "model_name", "total_tokens", "total_cost", "success_rate",
                    "created_at"]
    list_filter = ["provider_name", "model_name", "brand", "success_rate"]
    search_fields = ["job__job_id", "model_name"]
    raw_id_fields = ["job", "user"]
