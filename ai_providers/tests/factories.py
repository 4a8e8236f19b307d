"""factory_boy factories for the provider catalogue: providers, models, prices, company credentials and capacity
limits. The catalogue's defaults (migrations, `catalogue` fixture) already hold the real providers: a factory
given an existing provider or model name gets that row (get-or-create by name)."""

from decimal import Decimal

import factory
from factory.django import DjangoModelFactory

from ai_providers.crypto import encrypt_secret
from ai_providers.models import CapacityLimit, ModelPrice, Provider, ProviderCredential, ProviderKind, ProviderModel
from business.tests.factories import CompanyFactory


class ProviderFactory(DjangoModelFactory):
    """`ProviderFactory(name="openai")` is the catalogue's OpenAI row; another name makes an OpenAI-format one."""

    class Meta:
        model = Provider
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"provider-{n}")
    display_name = factory.LazyAttribute(lambda p: p.name.title())
    kind = ProviderKind.OPENAI


class ProviderModelFactory(DjangoModelFactory):
    class Meta:
        model = ProviderModel
        django_get_or_create = ("name",)

    provider = factory.SubFactory(ProviderFactory)
    name = factory.Sequence(lambda n: f"model-{n}")


class ModelPriceFactory(DjangoModelFactory):
    """A price per million tokens from `effective_from` (now by default)."""

    class Meta:
        model = ModelPrice

    model = factory.SubFactory(ProviderModelFactory)
    input_per_million = Decimal("1.000000")
    output_per_million = Decimal("2.000000")


class ProviderCredentialFactory(DjangoModelFactory):
    """A company's own key for a provider, encrypted as the service stores it: `ProviderCredentialFactory(
    company=c, provider=p, api_key="sk-x", base_url=...)`."""

    class Meta:
        model = ProviderCredential
        exclude = ("api_key",)

    company = factory.SubFactory(CompanyFactory)
    provider = factory.SubFactory(ProviderFactory, name="openai")
    api_key = "sk-factory"
    api_key_encrypted = factory.LazyAttribute(lambda c: encrypt_secret(c.api_key))


class CapacityLimitFactory(DjangoModelFactory):
    """The rate limits of an endpoint (the environment's unless `credential` is given) for one model (empty:
    each model), e.g. `CapacityLimitFactory(model="gpt-4o-mini", requests_per_minute=1)`."""

    class Meta:
        model = CapacityLimit

    provider = factory.SubFactory(ProviderFactory, name="openai")
    model = ""
