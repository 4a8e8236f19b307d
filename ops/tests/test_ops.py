"""Operations: metrics agree with the database after a run, health/readiness, structured logs, purge."""

import json
import logging
import os
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.management import call_command
from django.db.models import Count, Sum
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from ai_core import services
from ai_core.engine.runner import run_from_message
from ai_core.engine.upkeep import worker_beat
from ai_core.models import AIJob, AIJobEvent, JobDailyStat, WorkerHeartbeat
from ai_core.selectors import dashboard
from ai_usage.models import AIJobUsage
from kernel.logs import JsonFormatter, log_context

pytestmark = pytest.mark.usefixtures("job_types")
CHAT = {"model": "echo-1", "messages": [{"role": "user", "content": "hello"}]}


def _submit(brand, job_type="chat_completion", **extra):
    data = dict(CHAT, **extra) if job_type == "chat_completion" else {"prompt": "hello", "model": "echo-1"}
    return services.job_create(brand=brand, user=None, job_type=job_type, input_data=data)[0]


def _usage(job, *, cost: str, seconds: float, errors: int = 0):
    """The job's accounting row (created, or completed where the provider layer already wrote one)."""
    return AIJobUsage.objects.update_or_create(
        job=job,
        defaults=dict(
            brand=job.brand,
            job_type=job.job_type,
            provider_name="echo",
            model_name="echo-1",
            input_tokens=10,
            output_tokens=5,
            total_tokens=15,
            input_cost=Decimal(cost),
            output_cost=0,
            total_cost=Decimal(cost),
            execution_time_seconds=seconds,
            error_count=errors,
            job_created_at=job.created_at,
        ),
    )[0]


def _scrape(client=None) -> dict[tuple[str, tuple], float]:
    scraper = {"HTTP_AUTHORIZATION": f"Bearer {settings.AICORE_METRICS_TOKEN}"}
    response = (client or Client()).get("/metrics", **scraper)
    assert response.status_code == 200
    body = response.content.decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def _run_world(personas):
    """A small run: the engine completes and fails echo jobs; one is cancelled, two wait, one is charged."""
    for _ in range(3):
        _submit(personas.brand_a)
    _submit(personas.brand_a, echo={"fail": "permanent"})
    _submit(personas.brand_b, job_type="text_generation")
    while run_from_message(0) is not None:
        pass
    cancelled = _submit(personas.brand_a)
    services.job_cancel(job_pk=cancelled.pk)
    _submit(personas.brand_a)
    _submit(personas.brand_b)
    charged = _submit(personas.brand_a, job_type="text_generation")
    started = services.job_start(job_pk=charged.pk)
    services.job_complete(job_pk=charged.pk, attempt=started.attempt, result_data={}, cost=Decimal("0.012345"))
    # Accounting as the provider layer writes it (the engine adds its own rows where that layer is wired in).
    _usage(charged, cost="0.012345", seconds=1.5, errors=1)


# The engine closes its connection around provider calls, so runs happen outside a test transaction.
@pytest.mark.django_db(transaction=True)
def test_metrics_match_the_database_after_a_run(personas):
    _run_world(personas)
    metrics = _scrape()

    truth = AIJob.objects.values("brand_id", "brand__name", "job_type__name", "status").annotate(n=Count("id"))
    assert truth.count() >= 5
    for row in truth:
        labels = (
            ("brand", row["brand__name"]),
            ("brand_id", str(row["brand_id"])),
            ("job_type", row["job_type__name"]),
            ("status", row["status"]),
        )
        assert metrics[("aicore_jobs", labels)] == row["n"]
    assert sum(v for (name, _), v in metrics.items() if name == "aicore_jobs") == AIJob.objects.count()

    brand_a = (("brand", "A"), ("brand_id", str(personas.brand_a.id)))
    assert metrics[("aicore_job_cost_usd_total", (*brand_a, ("job_type", "text_generation")))] == pytest.approx(
        0.012345
    )
    pending_now = AIJob.objects.filter(status="pending", available_at__lte=timezone.now()).count()
    assert pending_now == 2
    assert sum(v for (name, _), v in metrics.items() if name == "aicore_queue_depth") == pending_now
    assert metrics[("aicore_queue_depth", (("priority", "normal"),))] == pending_now

    per_model = (
        AIJobUsage.objects.filter(execution_time_seconds__isnull=False)
        .values("provider_name", "model_name")
        .annotate(n=Count("id"), s=Sum("execution_time_seconds"), e=Sum("error_count"))
    )
    assert per_model
    for row in per_model:
        provider = (("model", row["model_name"]), ("provider", row["provider_name"]))
        assert metrics[("aicore_provider_latency_seconds_count", provider)] == row["n"]
        assert metrics[("aicore_provider_latency_seconds_sum", provider)] == pytest.approx(row["s"])
        assert metrics[("aicore_provider_errors_total", provider)] == row["e"]
    assert sum(v for (name, _), v in metrics.items() if name == "aicore_provider_errors_total") >= 1
    per_type = (
        AIJobUsage.objects.filter(execution_time_seconds__isnull=False).values("job_type__name").annotate(n=Count("id"))
    )
    for row in per_type:
        assert metrics[("aicore_job_duration_seconds_count", (("job_type", row["job_type__name"]),))] == row["n"]


def test_metrics_can_require_a_token(db, settings):
    settings.AICORE_METRICS_TOKEN = "s3cret-scraper"
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    answer = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scraper")
    assert answer.status_code == 200 and b"aicore_queue_depth" in answer.content


@pytest.mark.parametrize("env,served", [("test", False), ("production", False), ("development", True)])
def test_metrics_without_a_configured_token_are_served_in_development_only(db, settings, env, served):
    settings.AICORE_METRICS_TOKEN, settings.AICORE_ENV = "", env
    answer = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ")
    assert answer.status_code == (200 if served else 401)


def test_production_refuses_to_boot_without_a_metrics_token():
    env = {
        **os.environ,
        "AICORE_ENV": "production",
        "SECRET_KEY": "x" * 50,
        "AICORE_CREDENTIALS_KEY": Fernet.generate_key().decode(),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    env.pop("AICORE_METRICS_TOKEN", None)
    code = "import django; django.setup()"
    refused = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "AICORE_METRICS_TOKEN" in refused.stderr
    started = subprocess.run(
        [sys.executable, "-c", code], env={**env, "AICORE_METRICS_TOKEN": "t" * 32}, capture_output=True, text=True
    )
    assert started.returncode == 0, started.stderr


def test_brands_of_one_name_in_two_companies_are_separate_series(personas):
    from business.models import Brand

    acme = Brand.objects.create(company=personas.brand_a.company, name="Humari")
    zeta = Brand.objects.create(company=personas.brand_z.company, name="Humari")
    for brand, count in ((acme, 2), (zeta, 3)):
        for _ in range(count):
            _submit(brand)

    metrics = _scrape()

    for brand, count in ((acme, 2), (zeta, 3)):
        labels = (("brand", "Humari"), ("brand_id", str(brand.id)), ("job_type", "chat_completion"))
        assert metrics[("aicore_jobs", (*labels, ("status", "pending")))] == count
        assert ("aicore_job_cost_usd_total", labels) in metrics


def test_health_and_readiness(db, settings):
    assert Client().get("/healthz").json() == {"status": "ok"}
    ready = Client().get("/readyz")
    assert ready.status_code == 200, ready.json()
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}

    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    down = Client().get("/readyz")
    assert down.status_code == 503 and down.json()["checks"]["broker"].startswith("failed")


def test_readiness_needs_a_fresh_worker_heartbeat_where_workers_are_expected(db, settings):
    settings.AICORE_READYZ_REQUIRE_WORKER = True
    none = Client().get("/readyz")
    assert none.status_code == 503 and none.json()["checks"]["workers"] == "failed: no worker heartbeat"
    assert _workers_alive_metric() == 0

    worker_beat("w1@host")  # what a worker's upkeep thread writes every round
    ready = Client().get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["workers"] == "ok", ready.json()
    assert _workers_alive_metric() == 1

    stale = timezone.now() - timedelta(seconds=settings.AICORE_WORKER_STALE_SECONDS + 1)
    WorkerHeartbeat.objects.update(last_seen=stale)  # the worker stopped beating (killed, or hung)
    assert Client().get("/readyz").status_code == 503
    assert _workers_alive_metric() == 0

    settings.AICORE_READYZ_REQUIRE_WORKER = False  # the test suite's default: most tests run no worker
    assert "workers" not in Client().get("/readyz").json()["checks"]


def _workers_alive_metric() -> float:
    families = {
        f.name: f
        for f in text_string_to_metric_families(
            Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {settings.AICORE_METRICS_TOKEN}").content.decode()
        )
    }
    return families["aicore_workers_alive"].samples[0].value


def test_json_logs_carry_the_job_context():
    formatter = JsonFormatter()
    record = logging.LogRecord("ai_core.engine", logging.INFO, __file__, 1, "calling %s", ("echo",), None)
    with log_context(job_id="ai_job_abcdefghijkl", brand=7, attempt=2):
        inside = json.loads(formatter.format(record))
    outside = json.loads(formatter.format(record))
    assert (inside["message"], inside["job_id"], inside["brand"], inside["attempt"]) == (
        "calling echo",
        "ai_job_abcdefghijkl",
        7,
        2,
    )
    assert "job_id" not in outside and outside["level"] == "INFO"


@pytest.mark.django_db(transaction=True)
def test_purge_removes_old_finished_jobs_and_keeps_every_total(personas):
    _run_world(personas)
    old = timezone.now() - timedelta(days=40)
    finals = AIJob.objects.filter(status__in=["completed", "failed", "cancelled"])
    keep_final = finals.order_by("id").first()
    finals.exclude(pk=keep_final.pk).update(completed_at=old)
    usage_before = AIJobUsage.objects.aggregate(n=Count("id"), cost=Sum("total_cost"), tokens=Sum("total_tokens"))
    cost_before = JobDailyStat.objects.aggregate(c=Sum("cost_micros"))["c"]
    expected_gone = finals.exclude(pk=keep_final.pk).count()
    usage_of_purged = AIJobUsage.objects.filter(job__in=finals.exclude(pk=keep_final.pk)).count()
    assert usage_of_purged >= 1

    call_command("purge_jobs", "--older-than", "30d", "--dry-run")
    assert AIJob.objects.filter(completed_at=old).count() == expected_gone
    call_command("purge_jobs", "--older-than", "30d", "--batch-size", "2")

    assert not AIJob.objects.filter(completed_at__lt=timezone.now() - timedelta(days=30)).exists()
    assert AIJob.objects.filter(pk=keep_final.pk).exists()
    assert AIJob.objects.filter(status="pending").count() == 2
    assert not AIJobEvent.objects.exclude(job__in=AIJob.objects.all()).exists()
    # Usage and money stay; the roll-up counts exactly the jobs that remain.
    assert (
        AIJobUsage.objects.aggregate(n=Count("id"), cost=Sum("total_cost"), tokens=Sum("total_tokens")) == usage_before
    )
    assert AIJobUsage.objects.filter(job__isnull=True).count() == usage_of_purged
    assert JobDailyStat.objects.aggregate(c=Sum("cost_micros"))["c"] == cost_before
    rollup = {
        (r["brand_id"], r["job_type_id"], r["status"]): r["n"]
        for r in JobDailyStat.objects.values("brand_id", "job_type_id", "status").annotate(n=Sum("jobs"))
        if r["n"]
    }
    actual = {
        (r["brand_id"], r["job_type_id"], r["status"]): r["n"]
        for r in AIJob.objects.values("brand_id", "job_type_id", "status").annotate(n=Count("id"))
    }
    assert rollup == actual
    assert dashboard(brands=[personas.brand_a, personas.brand_b])["stats"]["total_jobs"] == AIJob.objects.count()


def test_the_asgi_app_serves_the_admin_styles(live_asgi):
    import httpx

    answer = httpx.get(f"{live_asgi}/static/admin/css/base.css", timeout=10)
    assert answer.status_code == 200 and "text/css" in answer.headers["content-type"]
