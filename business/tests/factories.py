"""factory_boy factories for tenancy: companies, brands, users, memberships and API keys (reusable by every app)."""

import factory
from factory.django import DjangoModelFactory

from business.models import ApiKey, Brand, Company, Membership, User

DEFAULT_PASSWORD = "factory-pass-1"


class CompanyFactory(DjangoModelFactory):
    class Meta:
        model = Company
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"Company {n}")


class BrandFactory(DjangoModelFactory):
    class Meta:
        model = Brand
        django_get_or_create = ("company", "name")

    company = factory.SubFactory(CompanyFactory)
    name = factory.Sequence(lambda n: f"Brand {n}")


class UserFactory(DjangoModelFactory):
    """A user of a company. `UserFactory(brands=[b1], admin_of=[b2])` adds memberships."""

    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    company = factory.SubFactory(CompanyFactory)
    password = factory.django.Password(DEFAULT_PASSWORD)

    @factory.post_generation
    def brands(self, create, extracted, **kwargs):
        for brand in extracted or ():
            MembershipFactory(user=self, brand=brand, role=Membership.Role.MEMBER)

    @factory.post_generation
    def admin_of(self, create, extracted, **kwargs):
        for brand in extracted or ():
            MembershipFactory(user=self, brand=brand, role=Membership.Role.ADMIN)


class MembershipFactory(DjangoModelFactory):
    class Meta:
        model = Membership
        django_get_or_create = ("user", "brand")

    brand = factory.SubFactory(BrandFactory)
    user = factory.SubFactory(UserFactory, company=factory.SelfAttribute("..brand.company"))
    role = Membership.Role.MEMBER


class ApiKeyFactory(DjangoModelFactory):
    """A brand API key made by `api_key_create` (hashed at rest, as in production); the full key, which exists in
    clear only at creation, is on `key.raw_key`: `ApiKeyFactory(brand=brand, user=admin).raw_key`."""

    class Meta:
        model = ApiKey

    brand = factory.SubFactory(BrandFactory)
    user = factory.LazyAttribute(lambda k: UserFactory(company=k.brand.company, admin_of=[k.brand]))
    name = factory.Sequence(lambda n: f"key {n}")

    @classmethod
    def _create(cls, model_class, *, brand, user, name, **kwargs):
        from business.services import api_key_create

        key, raw = api_key_create(brand=brand, user=user, name=name, **kwargs)
        key.raw_key = raw
        return key
