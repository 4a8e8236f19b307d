"""Isolation of the provider and usage endpoints that take an id (the persona suite defers these paths here).

Quotas of brand A: bob (brand B, same company) and carol (another company) get 404 on every operation.
Credentials belong to a company: carol gets 404 on every operation; bob, same company, may read them.
"""

import re

import pytest

from ai_core.tests.api.test_persona_isolation import WITH_ID
from ai_providers.models import Provider, ProviderCredential
from ai_providers.services import credential_create
from ai_usage.models import Quota

QUOTA_PATHS = {p for _, p in WITH_ID if re.match(r"^/ai/(providers|usage)/quotas/", p)}
CREDENTIAL_PATHS = {p for _, p in WITH_ID if p.startswith("/ai/providers/credentials/")}
ISOLATED_PATHS = QUOTA_PATHS | CREDENTIAL_PATHS


def _call(client, method, url):
    body = {"monthly_token_limit": 1, "is_active": False} if method in {"POST", "PUT", "PATCH"} else None
    send = getattr(client, method.lower())
    return send(url, body, format="json") if body else send(url)


@pytest.fixture
def objects_of_a(personas, catalogue):
    quota = Quota.objects.create(company=personas.brand_a.company, brand=personas.brand_a, monthly_token_limit=7)
    credential = credential_create(
        company=personas.brand_a.company, provider=Provider.objects.get(name="openai"), api_key="sk-a-secret"
    )
    return quota, credential


@pytest.mark.django_db
@pytest.mark.parametrize("method,path", sorted(op for op in WITH_ID if op[1] in ISOLATED_PATHS))
@pytest.mark.parametrize("outsider", ["bob", "carol"])
def test_another_brands_quota_or_another_companys_credential_is_a_404(
    personas, client_for, objects_of_a, method, path, outsider
):
    quota, credential = objects_of_a
    if path in CREDENTIAL_PATHS and outsider == "bob":
        pytest.skip("credentials are shared by the brands of one company")
    user = getattr(personas, outsider)
    brand = personas.brand_b if outsider == "bob" else personas.brand_z
    target = quota if path in QUOTA_PATHS else credential
    response = _call(client_for(user, brand), method, re.sub(r"\{id\}", str(target.pk), path))
    assert response.status_code == 404, response.content
    assert Quota.objects.get(pk=quota.pk).monthly_token_limit == 7
    assert ProviderCredential.objects.get(pk=credential.pk).is_active
