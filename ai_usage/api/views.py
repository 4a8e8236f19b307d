import builtins

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from ai_providers.selectors import provider_get
from ai_usage import selectors, services
from ai_usage.api.filters import UsageFilter
from ai_usage.api.serializers import QuotaSerializer, QuotaWriteSerializer, UsageSerializer
from ai_usage.models import AIJobUsage, Quota
from business.access import company_brands, require_company_admin
from business.api.mixins import BrandScopedMixin
from business.errors import ApplicationError
from business.numbers import parse_natural

MAX_DAYS = 366


@extend_schema_view(
    list=extend_schema(
        summary="List usage records",
        description=(
            "One row per finished job of the brand (completed, failed or timed out): input/output tokens, cost "
            "in USD (Decimal strings, 6 places), execution time, provider and model. Filters: provider, model, "
            "job_type, user, success, final_status, job_id, created_at__gte/lte. Rows stay when a job is deleted."
        ),
    )
)
class UsageViewSet(BrandScopedMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """Tokens and cost of the brand's finished jobs."""

    serializer_class = UsageSerializer
    filterset_class = UsageFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: there is no request brand
            return AIJobUsage.objects.none()
        return selectors.usage_list(brand=self.request.brand)

    @extend_schema(
        summary="Usage dashboard",
        description=(
            "Tokens, cost and jobs of the brand over the last `days` (1 to 366, default 30): totals, one entry "
            "per day, breakdowns by provider and by model, and the status of the brand's quotas."
        ),
        parameters=[OpenApiParameter("days", OpenApiTypes.INT, required=False)],
        responses={200: dict},
    )
    @action(detail=False, methods=["get"])
    def dashboard(self, request):
        days = parse_natural(request.query_params.get("days", "30"))
        if days is None or not 1 <= days <= MAX_DAYS:
            raise ApplicationError(f"days must be an integer from 1 to {MAX_DAYS}", error_code="INVALID_DAYS")
        return Response(selectors.usage_dashboard(brand=request.brand, days=days))

    @extend_schema(
        summary="Cost breakdown of a month",
        description=(
            "Tokens and cost of one calendar month (`month=YYYY-MM`, default this month): totals and breakdowns "
            "by provider, model, job type, user and brand. `scope=company` (company admins only) spans every "
            "brand of the company."
        ),
        parameters=[
            OpenApiParameter("month", OpenApiTypes.STR, required=False, description="YYYY-MM"),
            OpenApiParameter("scope", OpenApiTypes.STR, enum=["brand", "company"], required=False),
        ],
        responses={200: dict},
    )
    @action(detail=False, methods=["get"])
    def cost_breakdown(self, request):
        month = selectors.parse_month(request.query_params.get("month"))
        scope = request.query_params.get("scope", "brand")
        if scope not in {"brand", "company"}:
            raise ApplicationError("scope must be 'brand' or 'company'", error_code="INVALID_SCOPE")
        brands = list(company_brands(request.user, request.brand)) if scope == "company" else [request.brand]
        return Response({**selectors.cost_breakdown(brands=brands, month=month), "scope": scope})


class QuotaViewSet(BrandScopedMixin, viewsets.ViewSet):
    """Monthly quotas that apply to the brand (its own and company-wide ones); company admins change them."""

    queryset = Quota.objects.none()  # read by the OpenAPI generator only (the id's type); rows come from selectors

    @extend_schema(
        summary="List quotas",
        description=(
            "The quotas that apply to the brand: its own and the company-wide ones, for one provider or all, "
            "with their monthly token and cost limits."
        ),
        responses=QuotaSerializer(many=True),
    )
    def list(self, request):
        return Response(QuotaSerializer(selectors.quotas_of(request.brand), many=True).data)

    @extend_schema(
        summary="Get a quota",
        description="One quota that applies to the brand. A quota of another brand or company is a 404.",
        responses=QuotaSerializer,
    )
    def retrieve(self, request, pk=None):
        return Response(QuotaSerializer(selectors.quota_get(brand=request.brand, pk=pk)).data)

    def _data(self, validated: dict) -> dict:
        data = {
            k: v
            for k, v in validated.items()
            if k in {"monthly_token_limit", "monthly_cost_limit", "is_active", "alert_thresholds"}
        }
        if "scope" in validated:
            data["brand"] = self.request.brand if validated["scope"] == "brand" else None
        if "provider" in validated:
            data["provider"] = provider_get(validated["provider"]) if validated["provider"] else None
        return data

    @extend_schema(
        summary="Create a quota",
        description=(
            "Company admins only (else 403 COMPANY_ADMIN_REQUIRED): a monthly token and/or cost limit for this "
            "brand (`scope: brand`) or the whole company (`scope: company`), for one provider or all. Submits over "
            "it are refused with 429 QUOTA_EXCEEDED."
        ),
        request=QuotaWriteSerializer,
        responses={201: QuotaSerializer},
    )
    def create(self, request):
        require_company_admin(request)
        payload = QuotaWriteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        quota = services.quota_save(
            quota=None, company_id=request.brand.company_id, data=self._data(payload.validated_data)
        )
        return Response(QuotaSerializer(quota).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Change some of a quota's fields",
        description="Company admins only: changes the limits, scope, provider or `is_active` of the fields sent.",
        request=QuotaWriteSerializer,
        responses=QuotaSerializer,
    )
    def partial_update(self, request, pk=None):
        quota = selectors.quota_get(brand=request.brand, pk=pk)
        require_company_admin(request)
        payload = QuotaWriteSerializer(data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        quota = services.quota_save(
            quota=quota, company_id=request.brand.company_id, data=self._data(payload.validated_data)
        )
        return Response(QuotaSerializer(quota).data)

    @extend_schema(
        summary="Update a quota",
        description="Company admins only: the same as PATCH on the quota (the fields sent change, the others stay).",
        request=QuotaWriteSerializer,
        responses=QuotaSerializer,
    )
    def update(self, request, pk=None):
        return self.partial_update(request, pk)

    @extend_schema(
        summary="Delete a quota",
        description="Company admins only: the limit stops applying at once (204).",
        responses={204: None},
    )
    def destroy(self, request, pk=None):
        quota = selectors.quota_get(brand=request.brand, pk=pk)
        require_company_admin(request)
        quota.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Quota status this month",
        description=(
            "One quota's use this calendar month: its limits, tokens and cost used and reserved by jobs in "
            "flight, remaining, `percent_used`, `near_limit` (80 %), `exceeded` and `reset_at` (the first day "
            "of next month)."
        ),
        responses={200: dict},
    )
    @action(detail=True, methods=["get"])
    def quota_status(self, request, pk=None):
        return Response(services.quota_status(quota=selectors.quota_get(brand=request.brand, pk=pk)))

    @extend_schema(
        summary="Status of every quota",
        description="The status of each quota that applies to the brand this month, as `quota_status` gives it.",
        responses={200: builtins.list[dict]},  # `list` is the viewset's list action here
    )
    @action(detail=False, methods=["get"], url_path="status")
    def status_all(self, request):
        """The status of every quota that applies to the brand this month."""
        return Response([services.quota_status(quota=q) for q in selectors.quotas_of(request.brand)])
