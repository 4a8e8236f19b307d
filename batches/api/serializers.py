from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ai_core.models import JobPriority
from batches.models import Batch, CompletionWindow


class BatchJobInSerializer(serializers.Serializer):
    input_data = serializers.JSONField()
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    priority = serializers.ChoiceField(choices=JobPriority.choices, required=False)
    custom_id = serializers.CharField(max_length=64, required=False, allow_blank=True)


class BatchCreateSerializer(serializers.Serializer):
    """The JSON form (the JSONL form takes these fields as query parameters, one job per line)."""

    job_type = serializers.CharField(max_length=100)
    priority = serializers.ChoiceField(choices=JobPriority.choices, default=JobPriority.NORMAL)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    completion_window = serializers.ChoiceField(choices=CompletionWindow.choices, default=CompletionWindow.NOW)
    # Each job is checked by the service (per-job errors listed by index); here only that it is a list.
    jobs = serializers.ListField(child=serializers.JSONField(), allow_empty=False)


class BatchCountsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    pending = serializers.IntegerField()
    running = serializers.IntegerField()
    completed = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    timeout = serializers.IntegerField()


class BatchSerializer(serializers.ModelSerializer):
    job_type = serializers.SlugRelatedField(slug_field="name", read_only=True)
    status = serializers.SerializerMethodField()
    counts = serializers.SerializerMethodField()
    progress_percentage = serializers.SerializerMethodField()
    cost_so_far = serializers.SerializerMethodField()

    class Meta:
        model = Batch
        fields = [
            "id",
            "batch_id",
            "job_type",
            "status",
            "completion_window",
            "description",
            "total_jobs",
            "counts",
            "progress_percentage",
            "cost_so_far",
            "created_at",
            "cancel_requested_at",
            "completed_at",
        ]
        read_only_fields = fields

    def _summary(self, batch) -> dict:
        # One summary per batch per serialisation (status, counts, progress and cost read together).
        cache = self.context.setdefault("summaries", {})
        if batch.pk not in cache:
            from batches.selectors import batch_summary

            cache[batch.pk] = batch_summary(batch)
        return cache[batch.pk]

    def get_status(self, batch) -> str:
        return self._summary(batch)["status"]

    @extend_schema_field(BatchCountsSerializer)
    def get_counts(self, batch) -> dict:
        return self._summary(batch)["counts"]

    def get_progress_percentage(self, batch) -> float:
        return self._summary(batch)["progress_percentage"]

    def get_cost_so_far(self, batch) -> str:
        return self._summary(batch)["cost_so_far"]


class BatchCreatedSerializer(BatchSerializer):
    """The creation's answer: the batch, and (with ?partial=true) the lines left out."""

    rejected = serializers.SerializerMethodField()

    class Meta(BatchSerializer.Meta):
        fields = [*BatchSerializer.Meta.fields, "rejected"]
        read_only_fields = fields

    def get_rejected(self, batch) -> list[dict]:
        return self.context.get("rejected", [])


class BatchCancelResponseSerializer(serializers.Serializer):
    cancelled = serializers.IntegerField()
    already_final = serializers.IntegerField()
    batch = BatchSerializer()
