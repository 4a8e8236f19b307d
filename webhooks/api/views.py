from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from business.access import can_administer_brand
from business.api.mixins import BrandScopedMixin
from business.errors import AccessDenied
from webhooks import selectors, services
from webhooks.api.serializers import (
    DeliverySerializer,
    EndpointInputSerializer,
    EndpointSerializer,
    EndpointWithSecretSerializer,
)
from webhooks.models import WebhookEndpoint


class WebhookViewSet(BrandScopedMixin, viewsets.GenericViewSet):
    """The brand's webhook endpoints. Members may read them; brand admins and company admins manage them."""

    serializer_class = EndpointSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation: there is no request brand
            return WebhookEndpoint.objects.none()
        return selectors.endpoints_of(self.request.brand)

    def _endpoint(self):
        return selectors.endpoint_get(brand=self.request.brand, pk=self.kwargs["pk"])

    def _require_admin(self):
        if not can_administer_brand(self.request.user, self.request.brand):
            raise AccessDenied("Only brand admins manage webhooks", error_code="BRAND_ADMIN_REQUIRED")

    @extend_schema(
        summary="List webhook endpoints",
        description="The brand's endpoints (paginated), without their signing secrets. Every member may read them.",
    )
    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(EndpointSerializer(page, many=True).data)

    @extend_schema(
        summary="Get a webhook endpoint",
        description="One endpoint of the brand: URL, events it wants, whether it is active. Never its secret.",
    )
    def retrieve(self, request, pk=None):
        return Response(EndpointSerializer(self._endpoint()).data)

    @extend_schema(
        summary="Register a webhook endpoint",
        description=(
            "Brand admins and company admins only (else 403 BRAND_ADMIN_REQUIRED). The URL must be http(s) on a "
            "public address. `events` picks among job.completed, job.failed, job.cancelled and job.timeout (all "
            "by default). The answer carries the signing `secret`, shown only this once."
        ),
        request=EndpointInputSerializer,
        responses={201: EndpointWithSecretSerializer},
    )
    def create(self, request):
        self._require_admin()
        data = EndpointInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = services.endpoint_create(brand=request.brand, user=request.user, **data.validated_data)
        return Response(EndpointWithSecretSerializer(endpoint).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Change some of an endpoint's fields",
        description="Brand admins only: changes the URL, description, events or `is_active` sent.",
        request=EndpointInputSerializer,
        responses=EndpointSerializer,
    )
    def partial_update(self, request, pk=None):
        endpoint = self._endpoint()
        self._require_admin()
        data = EndpointInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        endpoint = services.endpoint_update(endpoint=endpoint, data=data.validated_data)
        return Response(EndpointSerializer(endpoint).data)

    @extend_schema(
        summary="Update a webhook endpoint",
        description="Brand admins only: the same as PATCH on the endpoint (the fields sent change, the others stay).",
        request=EndpointInputSerializer,
        responses=EndpointSerializer,
    )
    def update(self, request, pk=None):
        return self.partial_update(request, pk)

    @extend_schema(
        summary="Delete a webhook endpoint",
        description="Brand admins only: no more deliveries go to it (204).",
        responses={204: None},
    )
    def destroy(self, request, pk=None):
        endpoint = self._endpoint()
        self._require_admin()
        services.endpoint_delete(endpoint=endpoint)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Rotate an endpoint's secret",
        description="Brand admins only: issues a new signing secret, shown in this answer only; the old one stops.",
        request=None,
        responses=EndpointWithSecretSerializer,
    )
    @action(detail=True, methods=["post"])
    def rotate_secret(self, request, pk=None):
        endpoint = self._endpoint()
        self._require_admin()
        return Response(EndpointWithSecretSerializer(services.endpoint_rotate_secret(endpoint=endpoint)).data)

    @extend_schema(
        summary="An endpoint's delivery log",
        description=(
            "The endpoint's deliveries, newest first (paginated): event, job, status, attempts, the last HTTP "
            "status and error, and when the next retry is due."
        ),
        responses=DeliverySerializer(many=True),
    )
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        page = self.paginate_queryset(selectors.deliveries_of(self._endpoint()))
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)
