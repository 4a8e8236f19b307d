"""/ai/brand/: the request's brand and how it shares the providers' capacity with the company's other brands."""

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from business import services
from business.access import require_company_admin
from business.api.mixins import BrandScopedMixin
from business.models import Brand


class BrandSerializer(serializers.ModelSerializer):
    class Meta:
        model = Brand
        fields = ["id", "name", "capacity_weight", "max_running_jobs"]
        read_only_fields = ["id", "name"]


class BrandCapacityInputSerializer(serializers.Serializer):
    capacity_weight = serializers.IntegerField(min_value=1, max_value=32767, required=False)
    max_running_jobs = serializers.IntegerField(min_value=1, max_value=2**31 - 1, required=False, allow_null=True)


class BrandView(BrandScopedMixin, APIView):
    accepts_api_keys = False  # a key never manages the brand's settings

    @extend_schema(
        summary="Get the brand's settings",
        description=(
            "The brand named by X-Brand-ID: `capacity_weight` (its share when brands compete for a provider's "
            "capacity: weight 2 is served twice as often as weight 1) and `max_running_jobs` (at most that many "
            "of its jobs run at once across the deployment; null: no limit)."
        ),
        responses=BrandSerializer,
    )
    def get(self, request):
        return Response(BrandSerializer(request.brand).data)

    @extend_schema(
        summary="Change the brand's capacity settings",
        description=(
            "Company admins only (else 403 COMPANY_ADMIN_REQUIRED): the fields sent change, the others stay. "
            "`capacity_weight` at least 1; `max_running_jobs` at least 1, or null for no limit. The next claim "
            "applies them."
        ),
        request=BrandCapacityInputSerializer,
        responses=BrandSerializer,
    )
    def patch(self, request):
        require_company_admin(request)
        payload = BrandCapacityInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        brand = services.brand_capacity_set(brand=request.brand, **payload.validated_data)
        return Response(BrandSerializer(brand).data)


urlpatterns = [path("brand/", BrandView.as_view(), name="brand")]
