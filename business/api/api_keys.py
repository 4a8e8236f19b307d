"""/ai/api-keys/: the brand's service keys. Members list them; brand admins and company admins manage them."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from business import selectors, services
from business.access import can_administer_brand
from business.api.mixins import BrandScopedMixin
from business.errors import AccessDenied
from business.models import ApiKey, ApiKeyScope


class ApiKeySerializer(serializers.ModelSerializer):
    created_by = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "created_by",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
            "monthly_cost_limit",
        ]
        read_only_fields = fields

    def get_created_by(self, key: ApiKey) -> dict | None:
        user = key.created_by
        return {"id": user.id, "username": user.username} if user else None


class ApiKeyWithSecretSerializer(ApiKeySerializer):
    """The creation answer: the only response that carries the key itself."""

    key = serializers.CharField(read_only=True)

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


class ApiKeyInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=ApiKeyScope.choices), required=False, allow_empty=False, max_length=10
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    monthly_cost_limit = serializers.DecimalField(
        max_digits=14, decimal_places=6, min_value=0, required=False, allow_null=True
    )


class ApiKeyViewSet(BrandScopedMixin, viewsets.GenericViewSet):
    serializer_class = ApiKeySerializer
    accepts_api_keys = False  # a key never lists, makes or revokes keys (ApiKeyScopes)
    error_codes = {"create": ["403"], "revoke": ["403"]}

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ApiKey.objects.none()
        return selectors.api_keys_of(self.request.brand)

    def _require_admin(self):
        if not can_administer_brand(self.request.user, self.request.brand):
            raise AccessDenied("Only brand admins manage API keys", error_code="BRAND_ADMIN_REQUIRED")

    @extend_schema(
        summary="List the brand's API keys",
        description="Every key of the brand, newest first, paginated: its prefix, scopes and dates, never the key.",
    )
    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(ApiKeySerializer(page, many=True).data)

    @extend_schema(
        summary="Show an API key", description="One key of the brand (another brand's is a 404), never the key."
    )
    def retrieve(self, request, pk=None):
        return Response(ApiKeySerializer(selectors.api_key_get(brand=request.brand, pk=pk)).data)

    @extend_schema(
        summary="Create an API key",
        description=(
            "Brand admins and company admins: a new `aic_…` key with `scopes` (`jobs:read`, `jobs:write`, "
            "`gateway`), an optional `expires_at` and `monthly_cost_limit`. The full key is in this answer only; "
            "only its hash is stored."
        ),
        request=ApiKeyInputSerializer,
        responses={201: ApiKeyWithSecretSerializer},
    )
    def create(self, request):
        self._require_admin()
        data = ApiKeyInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        key, raw = services.api_key_create(brand=request.brand, user=request.user, **data.validated_data)
        key.key = raw
        return Response(ApiKeyWithSecretSerializer(key).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Revoke an API key",
        description="Brand admins and company admins: the key is refused from the next request on, open streams too.",
        request=None,
        responses=ApiKeySerializer,
    )
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        key = selectors.api_key_get(brand=request.brand, pk=pk)
        self._require_admin()
        return Response(ApiKeySerializer(services.api_key_revoke(key=key)).data)


router = SimpleRouter()
router.register("api-keys", ApiKeyViewSet, basename="api-key")
urlpatterns = router.urls
