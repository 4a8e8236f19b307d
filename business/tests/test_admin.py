"""The Django admin: every model of our apps is registered with list filters, and every page renders."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.urls import reverse

from ai_core.models import AIJob
from ai_core.tests.factories import AIJobFactory
from business.tests.factories import UserFactory

OUR_APPS = {"business", "ai_core", "ai_providers", "ai_openai", "ai_usage", "web"}


def our_models():
    return [m for m in apps.get_models() if m._meta.app_label in OUR_APPS]


def test_every_model_is_in_the_admin_with_list_filters():
    missing = [m._meta.label for m in our_models() if m not in admin.site._registry]
    assert not missing, f"register these in the admin: {missing}"
    unfiltered = [m._meta.label for m in our_models() if not admin.site._registry[m].list_filter]
    assert not unfiltered, f"give these admins list_filter: {unfiltered}"


@pytest.fixture
def superuser_client(personas, client):
    AIJobFactory(brand=personas.brand_a, created_by=personas.alice, status="completed")
    root = UserFactory(username="root", is_staff=True, is_superuser=True, company=None)
    client.force_login(root)
    return client


def test_every_changelist_search_filter_and_change_page_renders(superuser_client):
    for model, model_admin in admin.site._registry.items():
        info = model._meta.app_label, model._meta.model_name
        changelist = reverse("admin:{}_{}_changelist".format(*info))
        assert superuser_client.get(changelist).status_code == 200, changelist
        if model_admin.search_fields:
            assert superuser_client.get(changelist, {"q": "a"}).status_code == 200, changelist
        for spec in model_admin.list_filter:
            if isinstance(spec, str) and "__" not in spec:
                field = model._meta.get_field(spec)
                if field.is_relation or field.get_internal_type() in {"DateTimeField", "DateField"}:
                    continue
                value = model._meta.default_manager.values_list(spec, flat=True).first()
                if value is not None:
                    assert superuser_client.get(changelist, {spec: value}).status_code == 200, (
                        changelist,
                        spec,
                    )
        if model_admin.has_add_permission(_request(superuser_client)):
            assert superuser_client.get(reverse("admin:{}_{}_add".format(*info))).status_code == 200, info
        instance = model._meta.default_manager.first()
        if instance is not None:
            url = reverse("admin:{}_{}_change".format(*info), args=[instance.pk])
            assert superuser_client.get(url).status_code == 200, url


def _request(client):
    from django.test import RequestFactory

    from business.models import User

    request = RequestFactory().get("/admin/")
    request.user = User.objects.get(username="root")
    return request


def test_the_admin_never_lets_a_job_status_be_edited(superuser_client):
    from ai_core.admin import AIJobAdmin

    readonly = AIJobAdmin(AIJob, admin.site).get_readonly_fields(_request(superuser_client))
    for field in ("status", "result_data", "started_at", "completed_at", "attempts", "task_id", "brand"):
        assert field in readonly
