from rest_framework import serializers

from ai_core.models import JobPriority

MESSAGE_ROLES = ["system", "developer", "user", "assistant", "tool"]


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=MESSAGE_ROLES)
    content = serializers.CharField(allow_blank=True, max_length=200_000, trim_whitespace=False)
    name = serializers.CharField(max_length=64, required=False)


class ChatRequestSerializer(serializers.Serializer):
    model = serializers.CharField(max_length=100, required=False)
    messages = MessageSerializer(many=True, allow_empty=False, max_length=500)
    temperature = serializers.FloatField(min_value=0, max_value=2, required=False, allow_null=True)
    top_p = serializers.FloatField(min_value=0, max_value=1, required=False, allow_null=True)
    max_tokens = serializers.IntegerField(min_value=1, max_value=200_000, required=False, allow_null=True)
    max_completion_tokens = serializers.IntegerField(min_value=1, max_value=200_000, required=False, allow_null=True)
    reasoning_effort = serializers.ChoiceField(
        choices=["minimal", "low", "medium", "high"], required=False, allow_null=True
    )
    response_format = serializers.JSONField(required=False, allow_null=True)
    tools = serializers.ListField(child=serializers.JSONField(), required=False, allow_null=True, max_length=128)
    tool_choice = serializers.JSONField(required=False, allow_null=True)
    priority = serializers.ChoiceField(choices=JobPriority.choices, default=JobPriority.NORMAL)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    run_async = serializers.BooleanField(
        required=False, default=False, help_text="answer 202 at once even when the job type is synchronous"
    )

    def validate_response_format(self, value):
        if value is not None and (
            not isinstance(value, dict) or value.get("type") not in {"text", "json_object", "json_schema"}
        ):
            raise serializers.ValidationError('Expected {"type": "text" | "json_object" | "json_schema", ...}.')
        return value
