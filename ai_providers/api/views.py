from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from ai_providers import selectors, services
from ai_providers.api.serializers import (
    CapacityLimitSerializer,
    ConnectionTestSerializer,
    CredentialCreateSerializer,
    CredentialSerializer,
    CredentialUpdateSerializer,
)
from ai_providers.health import provider_health
from ai_providers.models import ProviderCredential
from business.access import require_company_admin
from business.api.mixins import BrandScopedMixin
from business.errors import AccessDenied


class ProviderListView(BrandScopedMixin, APIView):
    """The provider catalogue with, for the request's brand: whether a key is available, and health."""

    @extend_schema(
        summary="List providers",
        description=(
            "The active providers with their models, current prices (per million input/output tokens, with "
            "the date they apply from) and, for the request's brand: whether a key is available (`has_key`, "
            "`key_source`: company or environment) and health (success rate over 15 minutes, last connection test). "
            "`capacity`: per endpoint (the environment's, the company's credential) and model, the rate limits "
            "configured and learned from the provider's headers, their use now (requests and tokens of the last "
            "minute, calls in flight), the share of calls answered 429 and the waits for capacity."
        ),
        responses={200: list[dict]},
    )
    def get(self, request):
        providers = list(selectors.providers_active())
        health = provider_health(brand=request.brand, providers=providers)
        capacity = selectors.capacity_overview(company_id=request.brand.company_id)
        data = []
        for provider in providers:
            source = selectors.key_source(company_id=request.brand.company_id, provider=provider)
            data.append(
                {
                    "name": provider.name,
                    "display_name": provider.display_name,
                    "kind": provider.kind,
                    "default_model": provider.default_model,
                    "has_key": source is not None,
                    "key_source": source,
                    "models": [selectors.model_as_dict(model) for model in provider.models.all() if model.is_active],
                    "health": health[provider.pk],
                    "capacity": [row for row in capacity if row["provider"] == provider.name],
                }
            )
        return Response(data)


def _set_capacity(request, *, provider, credential) -> Response:
    """A PUT of an endpoint's limits for one model (the body: CapacityLimitSerializer), answered with the row."""
    payload = CapacityLimitSerializer(data=request.data)
    payload.is_valid(raise_exception=True)
    limits = dict(payload.validated_data)
    row = services.capacity_limit_set(
        provider=provider, credential=credential, model=limits.pop("model"), limits=limits
    )
    return Response(CapacityLimitSerializer(row).data)


class EnvironmentCapacityView(BrandScopedMixin, APIView):
    """The capacity limits of the operator's own endpoint for a provider (the environment's key and URL): what
    every company without a credential of its own calls. Read as /ai/providers/ is; set by staff only."""

    @extend_schema(
        summary="List the environment endpoint's capacity limits",
        description=(
            "The limits configured for the operator's endpoint of this provider (the one called with the "
            "environment's key), per model (`model` empty: each model of the endpoint). A limit that is null is "
            "not configured: what the provider's headers say applies alone. Unknown provider: 404."
        ),
        responses=CapacityLimitSerializer(many=True),
    )
    def get(self, request, name: str):
        provider = selectors.provider_get(name, status_code=404)
        rows = provider.capacity_limits.filter(credential=None).order_by("model")
        return Response(CapacityLimitSerializer(rows, many=True).data)

    @extend_schema(
        summary="Set the environment endpoint's capacity limits for a model",
        description=(
            "Staff only (else 403 STAFF_REQUIRED): the requests per minute, tokens per minute and concurrent "
            "requests of the operator's endpoint of this provider, for `model` (empty: each model). They bind "
            "every company calling it with the environment's key. Null: not configured. Every process applies "
            "them within AICORE_CAPACITY_CACHE_SECONDS."
        ),
        request=CapacityLimitSerializer,
        responses=CapacityLimitSerializer,
    )
    def put(self, request, name: str):
        provider = selectors.provider_get(name, status_code=404)
        if not (request.user.is_staff or request.user.is_superuser):
            raise AccessDenied(
                "Only staff may change the environment endpoint's capacity limits", error_code="STAFF_REQUIRED"
            )
        return _set_capacity(request, provider=provider, credential=None)


class CredentialViewSet(BrandScopedMixin, viewsets.ViewSet):
    """Your company's provider credentials. The key is write-only: responses carry `has_key` only."""

    queryset = ProviderCredential.objects.none()  # for the OpenAPI generator only (the id's type)

    def _credential(self, pk):
        return selectors.credential_get(brand=self.request.brand, pk=pk)

    @extend_schema(
        summary="List provider credentials",
        description="The company's stored provider credentials. Keys are never returned: only `has_key`.",
        responses=CredentialSerializer(many=True),
    )
    def list(self, request):
        return Response(CredentialSerializer(selectors.credentials_of(request.brand), many=True).data)

    @extend_schema(
        summary="Get a provider credential",
        description="One credential of the company (the key itself stays write-only). Another company's is a 404.",
        responses=CredentialSerializer,
    )
    def retrieve(self, request, pk=None):
        return Response(CredentialSerializer(self._credential(pk)).data)

    @extend_schema(
        summary="Store a provider credential",
        description=(
            "Company admins only (else 403 COMPANY_ADMIN_REQUIRED): an API key (encrypted at rest), optional base "
            "URL (private addresses refused unless allowed) and organization for one provider. The company's "
            "key wins over the environment's."
        ),
        request=CredentialCreateSerializer,
        responses={201: CredentialSerializer},
    )
    def create(self, request):
        require_company_admin(request)
        payload = CredentialCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        credential = services.credential_create(
            company=request.brand.company,
            provider=selectors.provider_get(data["provider"]),
            api_key=data["api_key"],
            base_url=data["base_url"],
            organization=data["organization"],
        )
        return Response(CredentialSerializer(credential).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Change some of a credential's fields",
        description="Company admins only: replaces the key, base URL, organization or `is_active` sent.",
        request=CredentialUpdateSerializer,
        responses=CredentialSerializer,
    )
    def partial_update(self, request, pk=None):
        credential = self._credential(pk)
        require_company_admin(request)
        payload = CredentialUpdateSerializer(data=request.data, partial=True)
        payload.is_valid(raise_exception=True)
        credential = services.credential_update(credential=credential, data=payload.validated_data)
        return Response(CredentialSerializer(credential).data)

    @extend_schema(
        summary="Update a credential",
        description="Company admins only: as PATCH on the credential (the fields sent change, the others stay).",
        request=CredentialUpdateSerializer,
        responses=CredentialSerializer,
    )
    def update(self, request, pk=None):
        return self.partial_update(request, pk)

    @extend_schema(
        summary="Delete a credential",
        description="Company admins only: the company falls back to the environment's key, if any (204).",
        responses={204: None},
    )
    def destroy(self, request, pk=None):
        credential = self._credential(pk)
        require_company_admin(request)
        services.credential_delete(credential=credential)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="List a credential's capacity limits",
        description=(
            "The limits configured for the endpoint this credential calls, per model (`model` empty: each model of "
            "the endpoint). Jobs beyond them wait for capacity (`waiting` in the job) instead of failing; a limit "
            "that is null is not configured, and what the provider's headers say applies alone."
        ),
        methods=["GET"],
        responses=CapacityLimitSerializer(many=True),
    )
    @extend_schema(
        methods=["PUT"],
        summary="Set a credential's capacity limits for a model",
        description=(
            "Company admins only (else 403 COMPANY_ADMIN_REQUIRED): the requests per minute, tokens per minute and "
            "concurrent requests of the endpoint this credential calls, for `model` (empty: each model). Null: "
            "not configured. Every process applies them within AICORE_CAPACITY_CACHE_SECONDS."
        ),
        request=CapacityLimitSerializer,
        responses=CapacityLimitSerializer,
    )
    @action(detail=True, methods=["get", "put"])
    def capacity(self, request, pk=None):
        credential = self._credential(pk)
        if request.method == "GET":
            rows = credential.capacity_limits.order_by("model")
            return Response(CapacityLimitSerializer(rows, many=True).data)
        require_company_admin(request)
        return _set_capacity(request, provider=credential.provider, credential=credential)

    @extend_schema(
        summary="Test a credential",
        description=(
            "Company admins only: makes a real call to the provider with this key and answers whether it "
            "worked, with the latency and the provider's message; the result shows in the provider's health."
        ),
        request=None,
        responses=ConnectionTestSerializer,
    )
    @action(detail=True, methods=["post"])
    def test_connection(self, request, pk=None):
        credential = self._credential(pk)
        require_company_admin(request)
        return Response(services.credential_test(credential=credential))
