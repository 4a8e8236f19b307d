from django.db import models
from django.utils import timezone


class BareJob(models.Model):
    """About the shape of an AIJob row, with none of its rules: what a plain CRUD endpoint would serve."""

    job_id = models.CharField(max_length=19, unique=True)
    status = models.CharField(max_length=10, default="pending")
    priority = models.CharField(max_length=10, default="normal")
    progress_percentage = models.PositiveSmallIntegerField(default=0)
    description = models.TextField(blank=True)
    input_data = models.JSONField(default=dict)
    result_data = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.job_id
