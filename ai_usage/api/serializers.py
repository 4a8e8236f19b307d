from rest_framework import serializers

from ai_core.api.serializers import BrandRefSerializer
from ai_usage.models import AIJobUsage, Quota
from business.numbers import BIGINT_MAX


class UsageSerializer(serializers.ModelSerializer):
    job_id = serializers.CharField(source="job.job_id", read_only=True, allow_null=True, default=None)
    job_type = serializers.CharField(source="job_type.name", read_only=True)
    user_id = serializers.IntegerField(read_only=True, allow_null=True)
    input_cost = serializers.DecimalField(max_digits=14, decimal_places=6, read_only=True)
    output_cost = serializers.DecimalField(max_digits=14, decimal_places=6, read_only=True)
    total_cost = serializers.DecimalField(max_digits=14, decimal_places=6, read_only=True)

    class Meta:
        model = AIJobUsage
        fields = [
            "id",
            "job_id",
            "job_type",
            "user_id",
            "provider_name",
            "model_name",
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "cached_input_tokens",
            "cache_write_5m_tokens",
            "cache_write_1h_tokens",
            "reasoning_tokens",
            "input_cost",
            "output_cost",
            "total_cost",
            "execution_time_seconds",
            "success_rate",
            "error_count",
            "final_status",
            "priced_at",
            "created_at",
        ]
        read_only_fields = fields


class QuotaSerializer(serializers.ModelSerializer):
    provider = serializers.CharField(source="provider.name", read_only=True, allow_null=True, default=None)
    brand = BrandRefSerializer(read_only=True, allow_null=True)
    scope = serializers.SerializerMethodField()

    class Meta:
        model = Quota
        fields = [
            "id",
            "scope",
            "brand",
            "provider",
            "monthly_token_limit",
            "monthly_cost_limit",
            "alert_thresholds",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_scope(self, quota) -> str:
        return "brand" if quota.brand_id else "company"


class QuotaWriteSerializer(serializers.Serializer):
    scope = serializers.ChoiceField(
        choices=["brand", "company"],
        required=False,
        default="brand",
        help_text="brand: the request's brand (X-Brand-ID); company: all its brands",
    )
    provider = serializers.CharField(max_length=50, required=False, allow_null=True)
    # Bounded by the bigint column: a larger number would reach the database and fail there, as a 500.
    monthly_token_limit = serializers.IntegerField(min_value=0, max_value=BIGINT_MAX, required=False, allow_null=True)
    monthly_cost_limit = serializers.DecimalField(
        max_digits=14, decimal_places=6, min_value=0, required=False, allow_null=True
    )
    alert_thresholds = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=100),
        max_length=10,
        required=False,
        help_text="percentages of a limit whose crossing (by the month's settled use, or settled + reserved when a "
        "reservation crosses it) sends one `quota.threshold` webhook per month and threshold; default [50, 80, 100]; "
        "[] for none",
    )
    is_active = serializers.BooleanField(required=False)
