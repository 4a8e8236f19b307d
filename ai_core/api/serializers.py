from rest_framework import serializers

from ai_core.models import AIJob, AIJobEvent, AIJobType, JobPriority, JobStatus


class JobTypeSerializer(serializers.ModelSerializer):
    class Meta:
        model = AIJobType
        fields = ["id", "name", "description", "category", "estimated_duration_seconds", "requires_async",
                  "default_model", "timeout_seconds", "max_attempts", "input_schema"]
        read_only_fields = fields


class JobTypeRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    category = serializers.CharField()


class BrandRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class UserRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class JobSerializer(serializers.ModelSerializer):
    """A job as lists show it (the original's list example, plus the lifecycle additions)."""

    job_type = JobTypeRefSerializer(read_only=True)
    brand = BrandRefSerializer(read_only=True)
    created_by = UserRefSerializer(read_only=True, allow_null=True)
    execution_time_seconds = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = AIJob
        fields = ["id", "job_id", "job_type", "status", "priority", "progress_percentage", "brand", "created_by",
                  "created_at", "updated_at", "started_at", "completed_at", "cancelled_at", "description",
                  "input_data", "result_data", "error_message", "error_code", "is_async", "attempts",
                  "execution_time_seconds"]
        read_only_fields = fields


class JobEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AIJobEvent
        fields = ["id", "from_status", "to_status", "at", "attempt", "reason", "actor"]
        read_only_fields = fields


class JobDetailSerializer(JobSerializer):
    openai_job = serializers.SerializerMethodField()
    usage = serializers.SerializerMethodField()
    events = JobEventSerializer(many=True, read_only=True)

    class Meta(JobSerializer.Meta):
        fields = JobSerializer.Meta.fields + ["task_id", "openai_job", "usage", "events"]
        read_only_fields = fields

    def get_openai_job(self, job) -> dict | None:
        from ai_core.extensions import job_extension

        return job_extension(job, "openai_job")

    def get_usage(self, job) -> dict | None:
        from ai_core.extensions import job_extension

        return job_extension(job, "usage")


class JobCreateSerializer(serializers.Serializer):
    job_type = serializers.CharField(max_length=100)
    priority = serializers.ChoiceField(choices=JobPriority.choices, default=JobPriority.NORMAL)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    input_data = serializers.JSONField()


class JobUpdateSerializer(serializers.Serializer):
    """Only these fields are client-writable; anything else in the body is ignored, never applied."""

    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    priority = serializers.ChoiceField(choices=JobPriority.choices, required=False)
    input_data = serializers.JSONField(required=False)
    progress_percentage = serializers.IntegerField(min_value=0, max_value=100, required=False)


class JobCancelledSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    job_id = serializers.CharField()
    status = serializers.CharField()
    cancelled_at = serializers.DateTimeField()


class CancelResponseSerializer(serializers.Serializer):
    message = serializers.CharField()
    job = JobCancelledSerializer()


class ByStatusResponseSerializer(serializers.Serializer):
    jobs = JobSerializer(many=True)
    count = serializers.IntegerField()


class DashboardSerializer(serializers.Serializer):
    stats = serializers.DictField(child=serializers.IntegerField())
    recent_jobs = JobSerializer(many=True)
    top_job_types = serializers.ListField(child=serializers.DictField())
    daily_activity = serializers.ListField(child=serializers.DictField())
    brand_breakdown = serializers.ListField(child=serializers.DictField())
    scope = serializers.ChoiceField(choices=["brand", "company"])


STATUS_CHOICES = JobStatus.values
