"""Budget alerts: a quota's thresholds (50/80/100 % by default) crossed by the month's use (settled, or settled
plus reserved on a reservation) are recorded once per month and threshold, delivered as `quota.threshold`
webhooks, shown in quota_status and the usage dashboard, and counted in the metrics."""

import json
import threading

import pytest
from django.conf import settings
from django.db import connection, connections
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from ai_core import services as jobs
from ai_usage.alerts import quota_threshold_crossed
from ai_usage.models import Quota, QuotaPeriod, QuotaThresholdCrossing
from ai_usage.services import month_start, quota_status
from ai_usage.tests.factories import QuotaFactory
from webhooks import services as webhooks
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.tasks import deliver
from webhooks.tests.test_webhooks import Receiver

MESSAGE = {"messages": [{"role": "user", "content": "budget"}], "model": "gpt-4o-mini", "max_tokens": 100}


@pytest.fixture
def receiver(settings):
    settings.AICORE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]  # the operator allows our local receiver
    server = Receiver()
    yield server
    server.close()


def submit(brand, user=None):
    job, _ = jobs.job_create(brand=brand, user=user, job_type="chat_completion", input_data=dict(MESSAGE))
    return job


def run(job, *, input_tokens, output_tokens=0):
    started = jobs.job_start(job_pk=job.pk)
    jobs.job_complete(
        job_pk=job.pk,
        attempt=started.attempt,
        result_data={"completion": "ok"},
        input_tokens=input_tokens,
        output_tokens=output_tokens,
    )


def crossed(quota):
    return list(
        QuotaThresholdCrossing.objects.filter(quota=quota, month=month_start())
        .order_by("threshold")
        .values_list("threshold", flat=True)
    )


@pytest.mark.django_db
def test_each_threshold_is_recorded_once_when_settled_use_reaches_it(personas, llm_env):
    quota = QuotaFactory(brand=personas.brand_a, monthly_token_limit=10_000)
    assert quota.alert_thresholds == [50, 80, 100]
    run(submit(personas.brand_a), input_tokens=3000)
    assert crossed(quota) == []  # 30 %
    run(submit(personas.brand_a), input_tokens=3000)
    assert crossed(quota) == [50]  # 60 %
    run(submit(personas.brand_a), input_tokens=2500)
    run(submit(personas.brand_a), input_tokens=100)
    assert crossed(quota) == [50, 80]  # 85 %, then 86 %: 80 is not recorded twice
    shown = quota_status(quota=quota)
    assert [c["threshold"] for c in shown["crossed_thresholds"]] == [50, 80]
    assert shown["crossed_thresholds"][0]["percent_used"] == 60.0
    assert shown["alert_thresholds"] == [50, 80, 100]


@pytest.mark.django_db
def test_a_reservation_crosses_what_used_plus_reserved_reaches_once_and_its_cancel_undoes_nothing(personas, llm_env):
    quota = QuotaFactory(brand=personas.brand_a, monthly_token_limit=200)
    job = submit(personas.brand_a)  # reserves most of the limit
    reserved = QuotaPeriod.objects.get(quota=quota).reserved_tokens
    assert 100 < reserved < 160
    assert crossed(quota) == [50]
    crossing = QuotaThresholdCrossing.objects.get(quota=quota)
    assert (crossing.basis, crossing.used_tokens, crossing.reserved_tokens) == ("reservation", 0, reserved)
    jobs.job_cancel(job_pk=job.pk)
    submit(personas.brand_a)  # the same reservation again: 50 % was crossed this month already
    assert crossed(quota) == [50]


@pytest.mark.django_db
def test_thresholds_are_editable_on_the_quota_api_and_checked(personas, client_for, llm_env):
    admin = client_for(personas.acme_admin, personas.brand_a)
    created = admin.post(
        "/ai/providers/quotas/", {"monthly_cost_limit": "1.00", "alert_thresholds": [90, 25]}, format="json"
    )
    assert created.status_code == 201, created.json()
    assert created.json()["alert_thresholds"] == [25, 90]
    quota_id = created.json()["id"]
    for bad in ([0], [101], ["half"], [50] * 11, "80"):
        response = admin.patch(f"/ai/providers/quotas/{quota_id}/", {"alert_thresholds": bad}, format="json")
        assert response.status_code == 400 and response.json()["error_code"] == "VALIDATION_ERROR", bad
    assert Quota.objects.get(pk=quota_id).alert_thresholds == [25, 90]
    off = admin.patch(f"/ai/providers/quotas/{quota_id}/", {"alert_thresholds": []}, format="json")
    assert off.status_code == 200 and off.json()["alert_thresholds"] == []
    # gpt-4o-mini: 5 000 × $0.15/1M + 1 000 × $0.60/1M = 0.00135 of $1.00: nothing to cross with no threshold
    run(submit(personas.brand_a), input_tokens=5000, output_tokens=1000)
    assert crossed(Quota.objects.get(pk=quota_id)) == []


@pytest.mark.django_db
def test_a_crossing_is_delivered_as_a_signed_quota_threshold_webhook_to_subscribers_only(
    personas, client_for, llm_env, receiver, django_capture_on_commit_callbacks
):
    quota = QuotaFactory(brand=personas.brand_a, monthly_token_limit=1000)
    created = client_for(personas.adam, personas.brand_a).post(
        "/ai/webhooks/", {"url": receiver.url, "events": ["quota.threshold"]}, format="json"
    )
    assert created.status_code == 201 and created.json()["events"] == ["quota.threshold"], created.json()
    wants = WebhookEndpoint.objects.get(pk=created.json()["id"])
    webhooks.endpoint_create(brand=personas.brand_a, user=personas.adam, url=receiver.url)  # job events only
    webhooks.endpoint_create(brand=personas.brand_b, user=None, url=receiver.url, events=["quota.threshold"])
    job = submit(personas.brand_a, personas.alice)
    with django_capture_on_commit_callbacks(execute=True):
        run(job, input_tokens=600)  # 60 %
    [delivery] = WebhookDelivery.objects.filter(event="quota.threshold")
    assert delivery.endpoint_id == wants.pk and delivery.job_id is None
    deliver(delivery.pk)
    [request] = [r for r in receiver.requests if r["headers"]["X-AICore-Event"] == "quota.threshold"]
    body = json.loads(request["body"])
    assert body["event"] == "quota.threshold"
    assert body["data"] == {
        "quota_id": quota.pk,
        "brand": {"id": personas.brand_a.pk, "name": "A"},
        "provider": None,
        "threshold": 50,
        "month": month_start().strftime("%Y-%m"),
        "percent_used": 60.0,
        "basis": "settlement",
        "used": {"tokens": 600, "cost": "0.000090"},  # 600 × $0.15/1M
        "reserved": {"tokens": 0, "cost": "0.000000"},
        "limit": {"tokens": 1000, "cost": None},
        "crossed_at": body["data"]["crossed_at"],
    }
    assert WebhookDelivery.objects.get(pk=delivery.pk).status == "succeeded"


@pytest.mark.django_db
def test_a_company_wide_quota_alerts_every_brand_of_the_company_that_subscribed(
    personas, llm_env, django_capture_on_commit_callbacks, settings
):
    settings.AICORE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    QuotaFactory(company=personas.brand_a.company, monthly_token_limit=1000, alert_thresholds=[10])
    for brand in (personas.brand_a, personas.brand_b, personas.brand_z):
        webhooks.endpoint_create(brand=brand, user=None, url="http://127.0.0.1:9/x", events=["quota.threshold"])
    with django_capture_on_commit_callbacks(execute=True):
        run(submit(personas.brand_b), input_tokens=200)
    brands = set(WebhookDelivery.objects.filter(event="quota.threshold").values_list("endpoint__brand", flat=True))
    assert brands == {personas.brand_a.pk, personas.brand_b.pk}  # Zeta's brand is another company
    assert WebhookDelivery.objects.filter(event="quota.threshold").first().payload["data"]["brand"] is None


@pytest.mark.django_db
def test_the_dashboard_and_the_metrics_show_the_crossings(personas, client_for, llm_env):
    quota = QuotaFactory(brand=personas.brand_a, monthly_token_limit=1000)
    run(submit(personas.brand_a), input_tokens=850)
    alice = client_for(personas.alice, personas.brand_a)
    [shown] = alice.get("/ai/usage/dashboard/").json()["quotas"]
    assert [c["threshold"] for c in shown["crossed_thresholds"]] == [50, 80]
    assert [
        c["threshold"] for c in alice.get(f"/ai/providers/quotas/{quota.pk}/quota_status/").json()["crossed_thresholds"]
    ] == [50, 80]
    body = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {settings.AICORE_METRICS_TOKEN}").content.decode()
    samples = {
        (s.name, s.labels["threshold"]): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name == "aicore_quota_threshold_crossings_total" and s.labels["quota_id"] == str(quota.pk)
    }
    assert samples == {
        ("aicore_quota_threshold_crossings_total", "50"): 1,
        ("aicore_quota_threshold_crossings_total", "80"): 1,
    }


@pytest.mark.django_db(transaction=True)
def test_settlements_racing_past_a_threshold_record_and_announce_it_once(personas, llm_env):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises every writer: the race this test exercises only exists on PostgreSQL")
    quota = QuotaFactory(brand=personas.brand_a, monthly_token_limit=100_000)
    started = []
    for _ in range(20):
        job = submit(personas.brand_a)
        started.append((job.pk, jobs.job_start(job_pk=job.pk).attempt))
    # 49 % used already: every one of the 20 settlements below takes the month past 50 %.
    QuotaPeriod.objects.filter(quota=quota).update(used_tokens=49_000)
    announced = []

    def heard(sender, *, crossing, **_):
        announced.append(crossing.threshold)

    quota_threshold_crossed.connect(heard, dispatch_uid="test-heard")
    barrier = threading.Barrier(len(started))

    def settle(job_pk, attempt):
        try:
            barrier.wait()
            jobs.job_complete(job_pk=job_pk, attempt=attempt, result_data={}, input_tokens=1500)
        finally:
            connections.close_all()

    try:
        threads = [threading.Thread(target=settle, args=pair) for pair in started]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        quota_threshold_crossed.disconnect(dispatch_uid="test-heard")
    assert QuotaPeriod.objects.get(quota=quota).used_tokens == 49_000 + 20 * 1500  # 79 %
    assert crossed(quota) == [50] and announced == [50]


@pytest.mark.django_db
def test_a_malformed_stored_threshold_never_breaks_a_settlement_and_the_admin_refuses_it(personas, llm_env):
    from django.core.exceptions import ValidationError

    quota = Quota.objects.create(
        company=personas.brand_a.company, brand=personas.brand_a, monthly_token_limit=1000, alert_thresholds=["x", 50]
    )
    run(submit(personas.brand_a), input_tokens=600)
    assert crossed(quota) == [50]
    with pytest.raises(ValidationError) as raised:
        quota.full_clean()
    assert "alert_thresholds" in raised.value.message_dict
    quota.alert_thresholds = [80, 20, 80]
    quota.full_clean()
    assert quota.alert_thresholds == [20, 80]
