"""ai_usage/statements.py: its INSERT follows the model (a field added with a default is written), and its
probes and locks read what the ORM would."""

import pytest
from django.db import connection, models
from django.utils import timezone

from ai_usage import statements
from ai_usage.models import Quota, QuotaThresholdCrossing


@pytest.fixture
def source_field_on_crossings():
    field = models.CharField(max_length=20, default="api")
    field.contribute_to_class(QuotaThresholdCrossing, "source")
    with connection.schema_editor() as editor:
        editor.add_field(QuotaThresholdCrossing, field)
    yield
    with connection.schema_editor() as editor:
        editor.remove_field(QuotaThresholdCrossing, field)
    QuotaThresholdCrossing._meta.local_fields.remove(field)
    QuotaThresholdCrossing._meta._expire_cache()
    delattr(QuotaThresholdCrossing, field.attname)


@pytest.mark.django_db(transaction=True)
def test_a_budget_alert_insert_writes_a_field_added_with_a_default_and_only_once(source_field_on_crossings, personas):
    quota = Quota.objects.create(company=personas.brand_a.company, monthly_token_limit=100)
    month = timezone.localdate().replace(day=1)

    def crossing():
        return QuotaThresholdCrossing(
            quota=quota, month=month, threshold=50, percent_used=51, used_tokens=51, used_cost_micros=0
        )

    assert statements.crossing_insert_once(crossing()) is True
    assert statements.crossing_insert_once(crossing()) is False  # the same alert: recorded once
    assert list(QuotaThresholdCrossing.objects.values_list("source", flat=True)) == ["api"]


@pytest.mark.django_db
def test_the_active_quota_probe_sees_only_active_quotas_of_the_company(personas):
    company = personas.brand_a.company
    assert statements.active_quota_exists(company.pk) is False
    quota = Quota.objects.create(company=company, monthly_token_limit=100, is_active=False)
    assert statements.active_quota_exists(company.pk) is False
    Quota.objects.filter(pk=quota.pk).update(is_active=True)
    assert statements.active_quota_exists(company.pk) is True
    assert statements.open_reservations_of_many([10**9]) == []
