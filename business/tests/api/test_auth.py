"""POST /auth/login/ and /auth/refresh/: tokens, the user profile, rotation and failed-login throttling."""

import io
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from business.models import LoginFailure


def login(username, password, ip="10.0.0.1"):
    return APIClient().post("/auth/login/", {"username": username, "password": password}, format="json", REMOTE_ADDR=ip)


def test_login_returns_tokens_and_the_users_company_and_brands(personas):
    response = login("adam", "adam-pass-1")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access", "refresh", "user"}
    user = body["user"]
    assert {"id", "username", "email", "company", "brands"} <= set(user)
    assert user["id"] == personas.adam.id
    assert user["username"] == "adam"
    assert user["company"] == {"id": personas.brand_a.company_id, "name": "Acme"}
    assert user["brands"] == [{"id": personas.brand_a.id, "name": "A", "role": "admin"}]


def test_login_lists_every_brand_of_the_company_for_a_company_admin(personas):
    user = login("ada", "ada-pass-1").json()["user"]

    assert [b["name"] for b in user["brands"]] == ["A", "B"]
    assert {b["role"] for b in user["brands"]} == {"admin"}


def test_the_access_token_authenticates_api_calls(personas):
    access = login("alice", "alice-pass-1").json()["access"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")

    assert client.get("/ai/jobs/").status_code == 200


@pytest.mark.parametrize("username,password", [("alice", "wrong-password"), ("nobody", "alice-pass-1")])
def test_bad_credentials_are_a_401_with_an_error_code(personas, username, password):
    response = login(username, password)

    assert response.status_code == 401
    assert response.json()["error_code"] == "INVALID_CREDENTIALS"
    assert "access" not in response.json()


def test_an_inactive_user_cannot_log_in(personas):
    personas.alice.is_active = False
    personas.alice.save()

    assert login("alice", "alice-pass-1").status_code == 401


@pytest.mark.parametrize("body", [{}, {"username": "alice"}, {"username": ["alice"], "password": "x"}])
def test_an_incomplete_login_body_is_a_400(personas, body):
    response = APIClient().post("/auth/login/", body, format="json")

    assert response.status_code == 400
    assert response.json()["error_code"] == "VALIDATION_ERROR"


def test_an_api_call_without_a_token_is_a_401(personas):
    response = APIClient().get("/ai/jobs/")

    assert response.status_code == 401
    assert response.json()["error_code"] == "NOT_AUTHENTICATED"


def test_a_forged_token_is_a_401(personas):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not.a.jwt")

    response = client.get("/ai/jobs/")

    assert response.status_code == 401
    assert response.json()["error_code"] == "AUTHENTICATION_FAILED"


# --- refresh rotation -----------------------------------------------------------------------------------


def test_refresh_returns_a_new_access_and_a_new_refresh_token(personas):
    refresh = login("alice", "alice-pass-1").json()["refresh"]

    response = APIClient().post("/auth/refresh/", {"refresh": refresh}, format="json")

    assert response.status_code == 200
    assert set(response.json()) == {"access", "refresh"}
    assert response.json()["refresh"] != refresh


def test_a_refresh_token_cannot_be_used_again_after_rotation(personas):
    refresh = login("alice", "alice-pass-1").json()["refresh"]
    rotated = APIClient().post("/auth/refresh/", {"refresh": refresh}, format="json").json()["refresh"]

    replay = APIClient().post("/auth/refresh/", {"refresh": refresh}, format="json")

    assert replay.status_code == 401
    assert replay.json()["error_code"] == "AUTHENTICATION_FAILED"
    assert APIClient().post("/auth/refresh/", {"refresh": rotated}, format="json").status_code == 200


def test_an_access_token_is_not_accepted_as_a_refresh_token(personas):
    access = login("alice", "alice-pass-1").json()["access"]

    response = APIClient().post("/auth/refresh/", {"refresh": access}, format="json")

    assert response.status_code == 401


def test_refresh_without_a_token_is_a_400(personas):
    response = APIClient().post("/auth/refresh/", {}, format="json")

    assert response.status_code == 400
    assert response.json()["error_code"] == "VALIDATION_ERROR"


# --- failed-login throttling ----------------------------------------------------------------------------


def test_five_failures_for_a_username_throttle_it_from_any_ip(personas):
    for attempt in range(settings.LOGIN_FAILURES_PER_USERNAME):
        assert login("alice", "wrong", ip=f"10.1.0.{attempt}").status_code == 401

    response = login("alice", "alice-pass-1", ip="10.9.9.9")

    assert response.status_code == 429
    assert response.json()["error_code"] == "LOGIN_THROTTLED"
    assert login("bob", "bob-pass-1", ip="10.9.9.9").status_code == 200  # other usernames are unaffected


def test_twenty_failures_from_an_ip_throttle_every_username_from_it(personas):
    for attempt in range(settings.LOGIN_FAILURES_PER_IP):
        assert login(f"guess{attempt % 4}", "wrong", ip="10.2.0.1").status_code == 401

    assert login("bob", "bob-pass-1", ip="10.2.0.1").status_code == 429
    assert login("bob", "bob-pass-1", ip="10.2.0.2").status_code == 200


def test_successful_logins_are_never_throttled(personas):
    for _ in range(settings.LOGIN_FAILURES_PER_IP + 5):
        assert login("alice", "alice-pass-1").status_code == 200
    assert LoginFailure.objects.count() == 0


def test_failures_older_than_the_window_no_longer_count(personas):
    for _ in range(settings.LOGIN_FAILURES_PER_USERNAME):
        login("alice", "wrong")
    assert login("alice", "alice-pass-1").status_code == 429

    window = timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS)
    LoginFailure.objects.update(at=timezone.now() - window - timedelta(seconds=1))

    assert login("alice", "alice-pass-1").status_code == 200


def test_a_deactivated_user_cannot_refresh_their_tokens(personas):
    refresh = login("alice", "alice-pass-1").json()["refresh"]
    personas.alice.is_active = False
    personas.alice.save()

    response = APIClient().post("/auth/refresh/", {"refresh": refresh}, format="json")

    assert response.status_code == 401
    assert "access" not in response.json()


# --- revocation -----------------------------------------------------------------------------------------


def _change_password_in_the_admin(user, new_password):
    from django.test import Client

    from business.tests.factories import UserFactory

    admin = Client()
    admin.force_login(UserFactory(username="root", is_staff=True, is_superuser=True, company=None))
    response = admin.post(
        f"/admin/business/user/{user.pk}/password/",
        {"password1": new_password, "password2": new_password, "usable_password": "true"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]


def _change_password_with_the_command(user, new_password):
    call_command("aicore_user", user.username, "--password", new_password, stdout=io.StringIO())


@pytest.mark.parametrize("change_password", [_change_password_in_the_admin, _change_password_with_the_command])
def test_a_password_change_revokes_every_access_and_refresh_token(personas, change_password):
    tokens = login("alice", "alice-pass-1").json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert client.get("/ai/jobs/").status_code == 200  # now in the per-process signature memo too

    change_password(personas.alice, "alice-new-pass-2")

    refused = client.get("/ai/jobs/")
    assert (refused.status_code, refused.json()["error_code"]) == (401, "AUTHENTICATION_FAILED")
    with_brand = APIClient()  # the one-query path (X-Brand-ID) decides alike
    with_brand.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}", HTTP_X_BRAND_ID=str(personas.brand_a.id))
    assert with_brand.get("/ai/jobs/").status_code == 401
    refresh = APIClient().post("/auth/refresh/", {"refresh": tokens["refresh"]}, format="json")
    assert refresh.status_code == 401 and "access" not in refresh.json()
    fresh = login("alice", "alice-new-pass-2").json()
    assert APIClient().post("/auth/refresh/", {"refresh": fresh["refresh"]}, format="json").status_code == 200


def test_a_refresh_token_of_a_deleted_user_is_a_401(personas):
    refresh = login("alice", "alice-pass-1").json()["refresh"]
    personas.alice.delete()

    response = APIClient().post("/auth/refresh/", {"refresh": refresh}, format="json")

    assert response.status_code == 401
