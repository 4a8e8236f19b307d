from django.db.models import QuerySet

from business.errors import NotFound
from business.models import Brand
from business.numbers import parse_natural
from webhooks.models import WebhookDelivery, WebhookEndpoint


def endpoints_of(brand: Brand) -> QuerySet[WebhookEndpoint]:
    """A brand's webhook endpoints: the one access function (another brand's endpoint is never found)."""
    return WebhookEndpoint.objects.filter(brand_id=brand.id)


def endpoint_get(*, brand: Brand, pk) -> WebhookEndpoint:
    pk = parse_natural(pk)
    endpoint = None if pk is None else endpoints_of(brand).filter(pk=pk).first()
    if endpoint is None:
        raise NotFound("Webhook not found", error_code="WEBHOOK_NOT_FOUND")
    return endpoint


def deliveries_of(endpoint: WebhookEndpoint) -> QuerySet[WebhookDelivery]:
    return WebhookDelivery.objects.filter(endpoint_id=endpoint.id)


def delivery_get(*, endpoint: WebhookEndpoint, pk) -> WebhookDelivery:
    """One delivery of the endpoint (itself found through endpoint_get): another endpoint's is never found."""
    delivery = deliveries_of(endpoint).filter(pk=pk).first() if str(pk).isdigit() and len(str(pk)) < 19 else None
    if delivery is None:
        raise NotFound("Delivery not found", error_code="DELIVERY_NOT_FOUND")
    return delivery
