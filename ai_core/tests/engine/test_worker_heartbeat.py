"""Real worker processes record their liveness in the database: /readyz and /metrics of another process (this
one) see them; a worker that stops gracefully removes its row, one killed -9 stops counting once its row is
older than AICORE_WORKER_STALE_SECONDS."""

import signal

import pytest
from django.conf import settings as django_settings
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from ai_core.models import WorkerHeartbeat
from testing.jobs import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_readyz_and_metrics_follow_the_heartbeats_of_real_workers(workers, settings):
    settings.AICORE_READYZ_REQUIRE_WORKER = True
    # Rows of earlier modules' workers, all ended by their modules' teardown (one killed there, after its 10 s of
    # warm shutdown, leaves a row that still counts as alive for AICORE_WORKER_STALE_SECONDS): only ours count.
    WorkerHeartbeat.objects.all().delete()
    killed, stopped = workers.start(concurrency=1), workers.start(concurrency=1)
    beats = wait_for(
        lambda: len(rows := list(WorkerHeartbeat.objects.filter(pid__in=[killed.pid, stopped.pid]))) == 2 and rows,
        timeout=60,
        what=lambda: f"both workers' first heartbeat\n{workers.logs()}",
    )
    assert all(beat.hostname.startswith("w") and "@" in beat.hostname for beat in beats)  # Celery node names
    ready = Client().get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["workers"] == "ok", ready.json()
    assert alive_metric() == 2
    first = WorkerHeartbeat.objects.get(pid=killed.pid).last_seen
    wait_for(  # stamped again every upkeep round (500 ms in tests), not once
        lambda: WorkerHeartbeat.objects.get(pid=killed.pid).last_seen > first, timeout=30, what="a new stamp"
    )

    stopped.send_signal(signal.SIGTERM)  # a graceful stop removes its row at once
    stopped.wait(timeout=30)
    assert not WorkerHeartbeat.objects.filter(pid=stopped.pid).exists()
    assert alive_metric() == 1 and Client().get("/readyz").status_code == 200

    workers.kill(killed)  # kill -9: it never removes its row, the row just grows old
    settings.AICORE_WORKER_STALE_SECONDS = 2
    gone = wait_for(
        lambda: (answer := Client().get("/readyz")).status_code == 503 and answer, timeout=30, what="/readyz 503"
    )
    assert gone.json()["checks"]["workers"] == "failed: no worker heartbeat"
    assert alive_metric() == 0 and WorkerHeartbeat.objects.filter(pid=killed.pid).exists()


def alive_metric() -> float:
    families = {
        f.name: f
        for f in text_string_to_metric_families(
            Client()
            .get("/metrics", HTTP_AUTHORIZATION=f"Bearer {django_settings.AICORE_METRICS_TOKEN}")
            .content.decode()
        )
    }
    return families["aicore_workers_alive"].samples[0].value
