"""factory_boy factories for webhooks: a brand's endpoints and their deliveries.

Stored as given, without the creation service's check of the target (tests of that check call the service or
the API): `WebhookEndpointFactory(brand=brand, url=receiver.url)`."""

import factory
from factory.django import DjangoModelFactory

from business.tests.factories import BrandFactory
from webhooks.models import WebhookDelivery, WebhookEndpoint


class WebhookEndpointFactory(DjangoModelFactory):
    class Meta:
        model = WebhookEndpoint

    brand = factory.SubFactory(BrandFactory)
    url = factory.Sequence(lambda n: f"https://93.184.216.34/hooks/{n}")


class WebhookDeliveryFactory(DjangoModelFactory):
    """A delivery of one event (a job event when `job` is given) to an endpoint, pending by default."""

    class Meta:
        model = WebhookDelivery

    endpoint = factory.SubFactory(WebhookEndpointFactory)
    job = None
    job_ref = factory.LazyAttribute(lambda d: d.job.job_id if d.job is not None else "")
    event = "job.completed"
    payload = factory.LazyAttribute(lambda d: {"event": d.event, "job_id": d.job_ref})
