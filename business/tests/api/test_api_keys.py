"""Brand API keys: shown once, hashed at rest, scoped, revocable, bound to their brand (personas of conftest)."""

import hashlib
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from ai_core import services as job_services
from aicore.sse import parse_sse
from business.models import ApiKey
from business.services import api_key_create

MESSAGES = {"messages": [{"role": "user", "content": "hi"}], "model": "echo-1"}


def key_client(raw_key: str, **headers) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}", **headers)
    return client


def new_key(personas, **kwargs) -> str:
    kwargs.setdefault("brand", personas.brand_a)
    kwargs.setdefault("user", personas.adam)
    kwargs.setdefault("name", "back office")
    return api_key_create(**kwargs)[1]


@pytest.mark.django_db
def test_a_key_is_shown_once_and_only_its_hash_is_stored(personas, client_for):
    admin = client_for(personas.adam, personas.brand_a)
    created = admin.post("/ai/api-keys/", {"name": "crm", "scopes": ["jobs:read"]}, format="json")
    assert created.status_code == 201, created.content
    raw = created.json()["key"]
    assert raw.startswith("aic_") and len(raw) >= 4 + 43
    assert created.json()["prefix"] == raw[4:12]
    row = ApiKey.objects.get(pk=created.json()["id"])
    assert row.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in str(ApiKey.objects.filter(pk=row.pk).values().first())
    for response in (admin.get("/ai/api-keys/"), admin.get(f"/ai/api-keys/{row.pk}/")):
        assert response.status_code == 200
        assert "key" not in str(response.json()).replace("'key_", "")  # no "key" field anywhere
        assert raw not in response.content.decode()
    listed = admin.get("/ai/api-keys/").json()["results"][0]
    assert set(listed) >= {
        "id",
        "name",
        "prefix",
        "scopes",
        "created_by",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    }
    assert listed["created_by"]["username"] == "adam"


@pytest.mark.django_db
def test_members_list_keys_but_only_admins_manage_them(personas, client_for):
    raw = new_key(personas)
    key = ApiKey.objects.get()
    member = client_for(personas.alice, personas.brand_a)
    assert member.get("/ai/api-keys/").json()["count"] == 1
    assert member.post("/ai/api-keys/", {"name": "x"}, format="json").json()["error_code"] == "BRAND_ADMIN_REQUIRED"
    assert member.post(f"/ai/api-keys/{key.pk}/revoke/").status_code == 403
    company_admin = client_for(personas.acme_admin, personas.brand_a)
    assert company_admin.post(f"/ai/api-keys/{key.pk}/revoke/").json()["revoked_at"] is not None
    # Another brand sees no key of A: a 404, not a 403.
    other = client_for(personas.bob, personas.brand_b)
    assert other.get("/ai/api-keys/").json()["count"] == 0
    assert other.get(f"/ai/api-keys/{key.pk}/").status_code == 404
    # A key cannot manage keys, whatever its scopes.
    assert key_client(raw).get("/ai/api-keys/").status_code in (401, 403)


@pytest.mark.django_db
def test_bad_scopes_are_a_400(personas, client_for):
    admin = client_for(personas.adam, personas.brand_a)
    response = admin.post("/ai/api-keys/", {"name": "x", "scopes": ["jobs:delete"]}, format="json")
    assert response.status_code == 400 and response.json()["error_code"] == "VALIDATION_ERROR"
    assert not ApiKey.objects.exists()


@pytest.mark.django_db
def test_a_key_acts_as_its_brand_with_its_scopes(personas, job_types, catalogue):
    raw = new_key(personas, scopes=["jobs:read", "jobs:write"])
    client = key_client(raw)
    created = client.post("/ai/jobs/", {"job_type": "chat_completion", "input_data": MESSAGES}, format="json")
    assert created.status_code == 201, created.content
    job = job_services.AIJob.objects.get(job_id=created.json()["job_id"])
    assert job.brand_id == personas.brand_a.id and job.created_by == personas.adam
    assert job.api_key_id == ApiKey.objects.get().pk
    assert client.get("/ai/jobs/").json()["count"] == 1
    # The key's own brand named explicitly is fine; another brand is refused.
    assert key_client(raw, HTTP_X_BRAND_ID=str(personas.brand_a.id)).get("/ai/jobs/").status_code == 200
    denied = key_client(raw, HTTP_X_BRAND_ID=str(personas.brand_b.id)).get("/ai/jobs/")
    assert denied.status_code == 403 and denied.json()["error_code"] == "BRAND_ACCESS_DENIED"
    # A key of brand B sees nothing of A.
    other = key_client(new_key(personas, brand=personas.brand_b, user=personas.bob))
    assert other.get("/ai/jobs/").json()["count"] == 0
    assert other.get(f"/ai/jobs/{job.job_id}/").status_code == 404
    # Keys never manage brand settings.
    assert client.post("/ai/webhooks/", {"url": "https://example.com/h"}, format="json").status_code == 403


@pytest.mark.django_db
def test_scopes_are_enforced(personas, job_types, catalogue):
    reader = key_client(new_key(personas, scopes=["jobs:read"]))
    assert reader.get("/ai/jobs/").status_code == 200
    refused = reader.post("/ai/jobs/", {"job_type": "chat_completion", "input_data": MESSAGES}, format="json")
    assert refused.status_code == 403 and refused.json()["error_code"] == "API_KEY_SCOPE_MISSING"
    gateway_only = key_client(new_key(personas, scopes=["gateway"]))
    assert gateway_only.get("/ai/jobs/").json()["error_code"] == "API_KEY_SCOPE_MISSING"
    assert not job_services.AIJob.objects.exists()


@pytest.mark.django_db
def test_revoked_expired_and_wrong_keys_are_401(personas):
    raw = new_key(personas)
    client = key_client(raw)
    assert client.get("/ai/jobs/").status_code == 200
    ApiKey.objects.update(revoked_at=timezone.now())
    refused = client.get("/ai/jobs/")
    assert refused.status_code == 401 and refused.json()["error_code"] == "API_KEY_REVOKED"
    expired = key_client(new_key(personas, expires_at=timezone.now() - timedelta(seconds=1)))
    assert expired.get("/ai/jobs/").json()["error_code"] == "API_KEY_EXPIRED"
    # Right prefix, wrong secret; and garbage.
    assert key_client(raw[:12] + "x" * 40).get("/ai/jobs/").json()["error_code"] == "API_KEY_INVALID"
    assert key_client("aic_nope").get("/ai/jobs/").status_code == 401


@pytest.mark.django_db
def test_a_key_of_a_creator_who_left_the_brand_stops_working(personas):
    from business.models import Membership

    client = key_client(new_key(personas))
    Membership.objects.filter(user=personas.adam).delete()
    assert client.get("/ai/jobs/").json()["error_code"] == "API_KEY_OWNER_GONE"


@pytest.mark.django_db
def test_last_used_at_is_written_at_most_once_a_minute(personas, django_assert_num_queries):
    client = key_client(new_key(personas))
    client.get("/ai/jobs/")
    first = ApiKey.objects.get().last_used_at
    assert first is not None
    client.get("/ai/jobs/")
    assert ApiKey.objects.get().last_used_at == first  # no write within the minute
    ApiKey.objects.update(last_used_at=first - timedelta(seconds=61))
    client.get("/ai/jobs/")
    assert ApiKey.objects.get().last_used_at > first


@pytest.mark.django_db
def test_a_key_monthly_cost_limit_is_a_quota(personas, llm_env):
    from decimal import Decimal

    client = key_client(new_key(personas, monthly_cost_limit=Decimal("0.000001")))
    body = {"job_type": "chat_completion", "input_data": {**MESSAGES, "model": "gpt-4o-mini"}}
    refused = client.post("/ai/jobs/", body, format="json")
    assert refused.status_code == 429 and refused.json()["error_code"] == "QUOTA_EXCEEDED"
    assert not job_services.AIJob.objects.exists()
    # The limit is the key's alone: the brand's users (and other keys) are not held by it.
    other = key_client(new_key(personas))
    assert other.post("/ai/jobs/", body, format="json").status_code == 201


@pytest.mark.django_db(transaction=True)
def test_an_open_stream_ends_when_its_key_is_revoked(personas, job_types, live_asgi, settings):
    raw = new_key(personas)
    job, _ = job_services.job_create(
        brand=personas.brand_a, user=personas.adam, job_type="chat_completion", input_data=MESSAGES, dispatch=False
    )
    headers = {"Authorization": f"Bearer {raw}"}
    with httpx.Client(timeout=20) as http:
        with http.stream("GET", f"{live_asgi}/ai/jobs/{job.job_id}/events/", headers=headers) as response:
            assert response.status_code == 200
            events = parse_sse(response.iter_lines())
            assert next(e for e in events if e.event == "status").data
            ApiKey.objects.update(revoked_at=timezone.now())
            error = next(e for e in events if e.event == "error")
    assert "API_KEY_REVOKED" in str(error.data)
    assert httpx.get(f"{live_asgi}/ai/jobs/{job.job_id}/events/", headers=headers).status_code == 401


@pytest.fixture
def key_memo(settings, monkeypatch):
    """The API-key memo on (5 s), with a clock the test moves."""
    from business import memo
    from business.services import api_keys_memo

    settings.AICORE_API_KEY_CACHE_SECONDS = 5
    clock = [1000.0]
    monkeypatch.setattr(memo.time, "monotonic", lambda: clock[0])
    api_keys_memo.clear()
    yield clock
    api_keys_memo.clear()


def _key_reads(client, url="/ai/jobs/") -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as statements:
        assert client.get(url).status_code == 200
    return sum("business_apikey" in q["sql"] and q["sql"].lstrip().startswith("SELECT") for q in statements)


@pytest.mark.django_db
def test_an_authenticated_key_is_memoised_and_a_revocation_here_applies_at_once(personas, client_for, key_memo):
    raw = new_key(personas)
    client = key_client(raw)
    assert _key_reads(client) == 1
    assert _key_reads(client) == 0  # from the memo
    # A wrong secret under the same prefix is read (and refused) every time: the memo keeps matching keys only.
    for _ in range(2):
        assert key_client(raw[:12] + "x" * 40).get("/ai/jobs/").json()["error_code"] == "API_KEY_INVALID"
    admin = client_for(personas.adam, personas.brand_a)
    assert admin.post(f"/ai/api-keys/{ApiKey.objects.get().pk}/revoke/").status_code == 200
    assert client.get("/ai/jobs/").json()["error_code"] == "API_KEY_REVOKED"


@pytest.mark.django_db
def test_a_revocation_made_by_another_process_applies_within_the_memo_ttl(personas, key_memo):
    client = key_client(new_key(personas))
    assert client.get("/ai/jobs/").status_code == 200
    ApiKey.objects.update(revoked_at=timezone.now())  # as another process would: this one's memo not cleared
    key_memo[0] += 4
    assert client.get("/ai/jobs/").status_code == 200  # still within the 5 s
    key_memo[0] += 1.5
    assert client.get("/ai/jobs/").json()["error_code"] == "API_KEY_REVOKED"


@pytest.mark.django_db
def test_an_expiry_is_checked_on_every_request_even_from_the_memo(personas, key_memo, monkeypatch):
    from business import services

    client = key_client(new_key(personas, expires_at=timezone.now() + timedelta(hours=1)))
    assert client.get("/ai/jobs/").status_code == 200
    later = timezone.now() + timedelta(hours=2)
    monkeypatch.setattr(services.timezone, "now", lambda: later)  # the memo's own clock has not moved
    assert client.get("/ai/jobs/").json()["error_code"] == "API_KEY_EXPIRED"
