"""business.api.authentication: a token's signature is verified once per process, everything else per request."""

import time

from rest_framework.test import APIClient
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken


def call_with(token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get("/ai/jobs/")


def expiring_token(user) -> AccessToken:
    """A valid access token that expires at the next whole second after the one to come."""
    token = AccessToken.for_user(user)
    token["exp"] = int(time.time()) + 2
    return token


def wait_until_expired(token) -> None:
    while time.time() <= token["exp"]:
        time.sleep(0.1)


def test_a_token_string_is_verified_once_and_then_accepted_from_memory(personas, monkeypatch):
    decoded = []
    decode = TokenBackend.decode
    monkeypatch.setattr(TokenBackend, "decode", lambda self, *a, **kw: decoded.append(1) or decode(self, *a, **kw))
    token = str(AccessToken.for_user(personas.alice))

    assert [call_with(token).status_code for _ in range(3)] == [200, 200, 200]
    assert len(decoded) == 1


def test_a_remembered_token_is_refused_once_expired_exactly_as_one_never_seen(personas):
    remembered, never_seen = expiring_token(personas.alice), expiring_token(personas.alice)
    assert call_with(remembered).status_code == 200

    wait_until_expired(remembered)
    wait_until_expired(never_seen)
    refused, refused_unseen = call_with(remembered), call_with(never_seen)

    assert refused.status_code == refused_unseen.status_code == 401
    assert refused.json() == refused_unseen.json()
    assert refused.json()["error_code"] == "AUTHENTICATION_FAILED"


def test_a_tampered_copy_of_a_remembered_token_is_refused(personas):
    token = str(AccessToken.for_user(personas.alice))
    assert call_with(token).status_code == 200
    header, payload, signature = token.split(".")
    bob = str(AccessToken.for_user(personas.bob)).split(".")[1]

    assert call_with(f"{header}.{bob}.{signature}").status_code == 401  # bob's claims under alice's signature
    assert call_with(f"{header}.{payload}.{signature[:-2]}xx").status_code == 401
    assert call_with(token).status_code == 200


def test_a_refresh_token_is_refused_as_an_access_token_even_after_an_access_token_was_remembered(personas):
    refresh = RefreshToken.for_user(personas.alice)
    assert call_with(refresh.access_token).status_code == 200

    assert call_with(refresh).status_code == 401


def test_a_remembered_token_of_a_user_deactivated_since_is_refused(personas):
    token = str(AccessToken.for_user(personas.alice))
    assert call_with(token).status_code == 200

    personas.alice.is_active = False
    personas.alice.save(update_fields=["is_active"])

    assert call_with(token).status_code == 401
