"""factory_boy factories for usage accounting: quotas and their monthly periods.

A quota is company-wide unless it names a brand: `QuotaFactory(brand=brand, monthly_token_limit=1000)` takes the
brand's company; `QuotaFactory(company=company, monthly_cost_limit=Decimal("10"))` covers every brand of it."""

import factory
from factory.django import DjangoModelFactory

from ai_usage.models import Quota, QuotaPeriod
from ai_usage.services import month_start
from business.tests.factories import CompanyFactory


class QuotaFactory(DjangoModelFactory):
    class Meta:
        model = Quota

    brand = None
    company = factory.LazyAttribute(lambda q: q.brand.company if q.brand is not None else CompanyFactory())


class QuotaPeriodFactory(DjangoModelFactory):
    """One month of a quota (this month by default) with what it has used and reserved."""

    class Meta:
        model = QuotaPeriod

    quota = factory.SubFactory(QuotaFactory)
    month = factory.LazyFunction(month_start)
