"""Per-company credentials: encrypted at rest, write-only through the API, never in a response, log or admin list."""

import logging
import os
import subprocess
import sys

import pytest
from django.test import Client

from ai_providers.crypto import decrypt_secret
from ai_providers.models import ProviderCredential
from ai_providers.services import client_for_model
from ai_providers.urls_safety import check_base_url
from business.errors import ApplicationError
from business.models import User

SECRET = "sk-proj-SUPERSECRET-0123456789"


@pytest.fixture
def allow_loopback(settings):
    settings.AICORE_ALLOW_PRIVATE_PROVIDER_URLS = True


def create_credential(client, fake_llm, key=SECRET):
    return client.post(
        "/ai/providers/credentials/",
        {"provider": "openai", "api_key": key, "base_url": fake_llm.openai_base_url},
        format="json",
    )


@pytest.mark.django_db
def test_the_key_is_encrypted_at_rest_and_never_returned(personas, client_for, fake_llm, allow_loopback, caplog):
    caplog.set_level(logging.DEBUG)
    admin = client_for(personas.acme_admin, personas.brand_a)
    responses = [create_credential(admin, fake_llm)]
    assert responses[0].status_code == 201, responses[0].content
    body = responses[0].json()
    assert body["has_key"] is True and "api_key" not in body and "api_key_encrypted" not in body
    pk = body["id"]
    stored = ProviderCredential.objects.get(pk=pk)
    assert SECRET not in stored.api_key_encrypted and decrypt_secret(stored.api_key_encrypted) == SECRET

    responses += [
        admin.get("/ai/providers/credentials/"),
        admin.get(f"/ai/providers/credentials/{pk}/"),
        admin.patch(f"/ai/providers/credentials/{pk}/", {"organization": "org-1"}, format="json"),
        admin.post(f"/ai/providers/credentials/{pk}/test_connection/"),
        admin.get("/ai/providers/"),
        client_for(personas.alice, personas.brand_a).get("/ai/providers/credentials/"),
    ]
    assert [r.status_code for r in responses] == [201, 200, 200, 200, 200, 200, 200]
    for response in responses:
        assert SECRET not in response.content.decode()
    assert SECRET not in caplog.text

    # the Django admin list page (and the change form) neither
    staff = User.objects.create_superuser("root", "root@example.com", "root-pass-1")
    browser = Client()
    browser.force_login(staff)
    for url in (
        "/admin/ai_providers/providercredential/",
        f"/admin/ai_providers/providercredential/{pk}/change/",
    ):
        page = browser.get(url)
        assert page.status_code == 200 and SECRET not in page.content.decode()
        assert stored.api_key_encrypted not in page.content.decode()


@pytest.mark.django_db
def test_test_connection_makes_a_real_call(personas, client_for, fake_llm, allow_loopback):
    admin = client_for(personas.acme_admin, personas.brand_a)
    good = create_credential(admin, fake_llm).json()
    result = admin.post(f"/ai/providers/credentials/{good['id']}/test_connection/").json()
    assert result["ok"] is True and result["models"] == 4
    admin.patch(f"/ai/providers/credentials/{good['id']}/", {"api_key": "bad-key"}, format="json")
    result = admin.post(f"/ai/providers/credentials/{good['id']}/test_connection/").json()
    assert result["ok"] is False and "Incorrect API key" in result["message"]
    listed = admin.get("/ai/providers/").json()
    openai = next(p for p in listed if p["name"] == "openai")
    assert openai["has_key"] is True and openai["key_source"] == "company"
    assert openai["health"]["status"] == "failing" and openai["health"]["last_test"]["ok"] is False


@pytest.mark.django_db
def test_the_company_key_is_used_before_the_environment(personas, client_for, fake_llm, allow_loopback, settings):
    settings.OPENAI_API_KEY = "sk-env"
    create_credential(client_for(personas.acme_admin, personas.brand_a), fake_llm)
    client = client_for_model(model="gpt-4o-mini", company_id=personas.brand_a.company_id).client
    assert client._sdk.api_key == SECRET and str(client._sdk.base_url).startswith(fake_llm.openai_base_url)
    other = client_for_model(model="gpt-4o-mini", company_id=personas.brand_z.company_id).client
    assert other._sdk.api_key == "sk-env"


@pytest.mark.django_db
def test_a_remembered_credential_is_forgotten_when_it_changes(personas, client_for, fake_llm, allow_loopback, settings):
    """Workers remember a company's endpoint for the catalogue TTL (no query nor decryption per job); a change
    saved in the process applies to its next call at once."""
    settings.AICORE_CATALOGUE_CACHE_SECONDS = 3600
    settings.OPENAI_API_KEY = "sk-env"
    company_id = personas.brand_a.company_id
    create_credential(client_for(personas.acme_admin, personas.brand_a), fake_llm)
    assert client_for_model(model="gpt-4o-mini", company_id=company_id).client._sdk.api_key == SECRET
    credential = ProviderCredential.objects.get(company_id=company_id)
    ProviderCredential.objects.filter(pk=credential.pk).update(is_active=False)  # no signal: remembered
    assert client_for_model(model="gpt-4o-mini", company_id=company_id).client._sdk.api_key == SECRET
    credential.is_active = False
    credential.save()
    assert client_for_model(model="gpt-4o-mini", company_id=company_id).client._sdk.api_key == "sk-env"


@pytest.mark.django_db
def test_only_company_admins_write_and_other_companies_see_nothing(personas, client_for, fake_llm, allow_loopback):
    member = client_for(personas.alice, personas.brand_a)
    assert create_credential(member, fake_llm).json()["error_code"] == "COMPANY_ADMIN_REQUIRED"
    brand_admin = client_for(personas.adam, personas.brand_a)
    assert create_credential(brand_admin, fake_llm).status_code == 403
    pk = create_credential(client_for(personas.acme_admin, personas.brand_a), fake_llm).json()["id"]
    # the same company's other brand sees it (credentials are per company) …
    assert client_for(personas.bob, personas.brand_b).get(f"/ai/providers/credentials/{pk}/").status_code == 200
    # … another company gets 404 on every verb
    carol = client_for(personas.carol, personas.brand_z)
    assert carol.get("/ai/providers/credentials/").json() == []
    for response in (
        carol.get(f"/ai/providers/credentials/{pk}/"),
        carol.patch(f"/ai/providers/credentials/{pk}/", {"is_active": False}, format="json"),
        carol.delete(f"/ai/providers/credentials/{pk}/"),
        carol.post(f"/ai/providers/credentials/{pk}/test_connection/"),
    ):
        assert response.status_code == 404
    assert create_credential(client_for(personas.acme_admin, personas.brand_a), fake_llm).status_code == 409


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/v1",
        "http://localhost/v1",
        "http://10.0.0.5/v1",
        "http://169.254.169.254/latest",
        "http://[::1]/v1",
        "http://192.168.1.1/",
        "ftp://example.com/",
        "http://user:pw@8.8.8.8/",
    ],
)
def test_a_private_loopback_or_link_local_base_url_is_refused(url, personas, client_for):
    with pytest.raises(ApplicationError) as raised:
        check_base_url(url)
    assert raised.value.error_code == "UNSAFE_BASE_URL"
    response = client_for(personas.acme_admin, personas.brand_a).post(
        "/ai/providers/credentials/",
        {"provider": "openai", "api_key": "sk-x", "base_url": url},
        format="json",
    )
    assert response.status_code == 400


def test_public_addresses_and_operator_allowed_hosts_pass(settings):
    assert check_base_url("https://8.8.8.8/v1/") == "https://8.8.8.8/v1"
    settings.AICORE_PROVIDER_HOST_ALLOWLIST = ["127.0.0.1"]
    assert check_base_url("http://127.0.0.1:8200/v1") == "http://127.0.0.1:8200/v1"


def test_production_refuses_to_start_without_a_credentials_key():
    env = {
        **os.environ,
        "AICORE_ENV": "production",
        "SECRET_KEY": "x" * 50,
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    env.pop("AICORE_CREDENTIALS_KEY", None)
    code = "import django; django.setup()"
    refused = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "AICORE_CREDENTIALS_KEY" in refused.stderr
    from cryptography.fernet import Fernet

    ok = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "AICORE_CREDENTIALS_KEY": Fernet.generate_key().decode()},
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
