"""`manage.py aicore_user` (SPEC §2): create or update a user and print one JSON line."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework_simplejwt.tokens import RefreshToken

from business.api.authentication import token_revoked
from business.models import Brand, Company, Membership, User
from business.services import user_provision


def aicore_user(*args) -> dict:
    out = StringIO()
    call_command("aicore_user", *args, stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, "the command prints exactly one line"
    return json.loads(lines[0])


def test_it_creates_the_user_company_and_brands_and_prints_one_json_line(db):
    out = aicore_user(
        "zoe",
        "--password",
        "zoe-pass-1",
        "--company",
        "Initech",
        "--brand",
        "North",
        "--brand-admin",
        "South",
    )

    user = User.objects.get(username="zoe")
    company = Company.objects.get(name="Initech")
    north, south = Brand.objects.get(name="North"), Brand.objects.get(name="South")
    assert out == {
        "user_id": user.id,
        "company": {"id": company.id, "name": "Initech"},
        "brands": [
            {"id": north.id, "name": "North", "role": "member"},
            {"id": south.id, "name": "South", "role": "admin"},
        ],
    }
    assert user.check_password("zoe-pass-1")
    assert user.company == company and not user.is_company_admin and not user.is_staff


def test_running_it_again_updates_instead_of_duplicating(db):
    first = aicore_user("zoe", "--password", "zoe-pass-1", "--company", "Initech", "--brand", "North")

    second = aicore_user("zoe", "--company", "Initech", "--brand-admin", "North", "--brand", "East")

    assert second["user_id"] == first["user_id"]
    assert second["company"] == first["company"]
    assert {(b["name"], b["role"]) for b in second["brands"]} == {("North", "admin"), ("East", "member")}
    assert User.objects.filter(username="zoe").count() == 1
    assert Company.objects.filter(name="Initech").count() == 1
    assert Brand.objects.filter(name="North").count() == 1
    assert Membership.objects.filter(user__username="zoe").count() == 2
    assert User.objects.get(username="zoe").check_password("zoe-pass-1"), "no --password keeps the password"


def test_it_is_idempotent(db):
    args = ("zoe", "--password", "zoe-pass-1", "--company", "Initech", "--brand", "North", "--company-admin")

    assert aicore_user(*args) == aicore_user(*args)
    assert Membership.objects.count() == 1


def test_company_admin_and_staff_flags(db):
    aicore_user("root", "--password", "root-pass-1", "--company", "Initech", "--company-admin", "--staff")

    user = User.objects.get(username="root")
    assert user.is_company_admin and user.is_staff and user.is_superuser


def test_a_user_without_company_has_a_null_company_and_no_brands(db):
    assert aicore_user("robot", "--password", "robot-pass-1")["company"] is None


def test_brands_without_a_company_are_refused(db):
    with pytest.raises(CommandError):
        call_command("aicore_user", "zoe", "--password", "pw-123456", "--brand", "North", stdout=StringIO())
    assert not User.objects.filter(username="zoe").exists()


def test_moving_a_user_with_brands_to_another_company_is_refused(db):
    aicore_user("zoe", "--password", "zoe-pass-1", "--company", "Initech", "--brand", "North")

    with pytest.raises(CommandError):
        call_command("aicore_user", "zoe", "--company", "Umbrella", stdout=StringIO())
    assert User.objects.get(username="zoe").company.name == "Initech"


def test_the_provisioned_user_can_log_in(db):
    from rest_framework.test import APIClient

    aicore_user("zoe", "--password", "zoe-pass-1", "--company", "Initech", "--brand", "North")

    response = APIClient().post("/auth/login/", {"username": "zoe", "password": "zoe-pass-1"}, format="json")

    assert response.status_code == 200
    assert [b["name"] for b in response.json()["user"]["brands"]] == ["North"]


def test_provisioning_again_with_the_same_password_keeps_the_users_tokens(db):
    user = user_provision(username="dora", password="dora-pass-1")
    token = RefreshToken.for_user(user)
    user_provision(username="dora", password="dora-pass-1")
    assert not token_revoked(token, User.objects.get(pk=user.pk))
    user_provision(username="dora", password="dora-pass-2")
    assert token_revoked(token, User.objects.get(pk=user.pk))
