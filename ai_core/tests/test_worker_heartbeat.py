"""A real worker process records its liveness in the database: /readyz and /metrics of another process (this
one) see it, and stop counting it once it is killed."""

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from ai_core.models import WorkerHeartbeat
from ai_core.tests.helpers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_readyz_and_metrics_follow_the_heartbeat_of_a_real_worker(workers, settings):
    settings.AICORE_READYZ_REQUIRE_WORKER = True
    proc = workers.start(concurrency=1)
    beat = wait_for(
        lambda: WorkerHeartbeat.objects.filter(pid=proc.pid).first(),
        timeout=60,
        what=lambda: f"the worker's first heartbeat\n{workers.logs()}",
    )
    assert beat.hostname.startswith("w") and "@" in beat.hostname  # its Celery node name
    ready = Client().get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["workers"] == "ok", ready.json()
    assert alive_metric() == 1
    wait_for(  # stamped again every upkeep round (500 ms in tests), not once
        lambda: WorkerHeartbeat.objects.get(pk=beat.pk).last_seen > beat.last_seen, timeout=30, what="a new stamp"
    )

    workers.kill(proc)  # kill -9: it never removes its own row, the row just grows old
    settings.AICORE_WORKER_STALE_SECONDS = 2
    gone = wait_for(
        lambda: (answer := Client().get("/readyz")).status_code == 503 and answer, timeout=30, what="/readyz 503"
    )
    assert gone.json()["checks"]["workers"] == "failed: no worker heartbeat"
    assert alive_metric() == 0 and WorkerHeartbeat.objects.filter(pid=proc.pid).exists()


def alive_metric() -> float:
    families = {f.name: f for f in text_string_to_metric_families(Client().get("/metrics").content.decode())}
    return families["aicore_workers_alive"].samples[0].value
