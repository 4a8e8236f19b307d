from rest_framework import serializers

from ai_providers.models import ProviderCredential


class CredentialSerializer(serializers.ModelSerializer):
    """A credential as the API shows it: never the key, only whether one is stored."""

    provider = serializers.CharField(source="provider.name", read_only=True)
    has_key = serializers.BooleanField(read_only=True)

    class Meta:
        model = ProviderCredential
        fields = [
            "id",
            "provider",
            "has_key",
            "base_url",
            "organization",
            "is_active",
            "last_tested_at",
            "last_test_ok",
            "last_test_message",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class CredentialCreateSerializer(serializers.Serializer):
    provider = serializers.CharField(max_length=50)
    api_key = serializers.CharField(max_length=1000, write_only=True, trim_whitespace=True)
    base_url = serializers.URLField(max_length=500, required=False, allow_blank=True, default="")
    organization = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class CredentialUpdateSerializer(serializers.Serializer):
    api_key = serializers.CharField(max_length=1000, write_only=True, required=False, trim_whitespace=True)
    base_url = serializers.URLField(max_length=500, required=False, allow_blank=True)
    organization = serializers.CharField(max_length=200, required=False, allow_blank=True)
    is_active = serializers.BooleanField(required=False)


class ConnectionTestSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    message = serializers.CharField()
    latency_ms = serializers.IntegerField(allow_null=True)
    tested_at = serializers.DateTimeField()
    models = serializers.IntegerField(required=False)
    error_code = serializers.CharField(required=False)


class CapacityLimitSerializer(serializers.Serializer):
    """An endpoint's configured limits for a model; null: not configured (a learned limit applies alone)."""

    model = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    requests_per_minute = serializers.IntegerField(min_value=1, max_value=10_000_000, allow_null=True, default=None)
    tokens_per_minute = serializers.IntegerField(min_value=1, max_value=2_000_000_000, allow_null=True, default=None)
    concurrent_requests = serializers.IntegerField(min_value=1, max_value=100_000, allow_null=True, default=None)
