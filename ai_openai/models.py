from django.db import models
from django.utils import timezone


class OpenAIJob(models.Model):
    """The OpenAI side of a job: the parameters it was asked with and what the API answered."""

    job = models.OneToOneField("ai_core.AIJob", on_delete=models.CASCADE, related_name="openai_job")
    model = models.CharField(max_length=100)
    temperature = models.FloatField(null=True, blank=True)
    max_tokens = models.PositiveIntegerField(null=True, blank=True)
    max_completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    reasoning_effort = models.CharField(max_length=10, blank=True)
    response_format = models.JSONField(null=True, blank=True)
    tools = models.JSONField(null=True, blank=True)
    openai_id = models.CharField(max_length=255, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.model} for job {self.job_id}"

    def as_api_dict(self) -> dict:
        return {
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "max_completion_tokens": self.max_completion_tokens,
            "reasoning_effort": self.reasoning_effort or None,
            "response_format": self.response_format,
            "tools": self.tools,
            "openai_id": self.openai_id or None,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
