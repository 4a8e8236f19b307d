"""Response bodies documented by several apps' APIs (OpenAPI only: the bodies themselves are made by the
exception handler from the error raised).

A submission that does not fit a monthly quota is refused with 429 QUOTA_EXCEEDED wherever jobs are submitted
(the job API, /ai/openai/chat/, batches): each of those documents it with QUOTA_EXCEEDED_RESPONSE, so the body
is declared once, here below the apps that raise it (ai_usage) and those that document it.
"""

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class RemainingQuotaSerializer(serializers.Serializer):
    tokens = serializers.IntegerField(allow_null=True, help_text="tokens left this month; null: no token limit")
    cost = serializers.DecimalField(
        max_digits=14, decimal_places=6, allow_null=True, help_text="USD left this month; null: no cost limit"
    )


class QuotaExceededSerializer(serializers.Serializer):
    """The 429 body of a submission that does not fit a quota (the first quota it does not fit)."""

    detail = serializers.CharField()
    error_code = serializers.ChoiceField(choices=["QUOTA_EXCEEDED"])
    remaining_quota = RemainingQuotaSerializer(help_text="what is left of that quota this month (used + reserved)")
    required = RemainingQuotaSerializer(help_text="the most this job can use: what it reserves")


QUOTA_EXCEEDED_RESPONSE = OpenApiResponse(
    QuotaExceededSerializer,
    description="QUOTA_EXCEEDED: the job's maximum (prompt bound + output bound, at the current price) does not "
    "fit what is left of a monthly quota",
)
