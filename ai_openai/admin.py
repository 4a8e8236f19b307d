from django.contrib import admin

from ai_openai.models import OpenAIJob


@admin.register(OpenAIJob)
class OpenAIJobAdmin(admin.ModelAdmin):
    list_display = ["job", "model", "openai_id", "prompt_tokens", "completion_tokens", "total_tokens"]
    list_filter = ["model", "reasoning_effort", "created_at"]
    search_fields = ["job__job_id", "openai_id", "model"]
    raw_id_fields = ["job"]
