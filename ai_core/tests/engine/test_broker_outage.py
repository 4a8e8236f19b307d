"""The broker dies under running workers and comes back: the same worker processes go on consuming, and every
job — running when it died, submitted while it was away, submitted after — completes.

The broker is a private redis-server or RabbitMQ node (its own ports), really killed (kill -9) and started
again. The Redis outage lasts AICORE_TEST_BROKER_OUTAGE_SECONDS (10 by default, to keep `make test` short;
60 was measured by hand with the same test, see the README); the RabbitMQ one is a restart. Before the fix
every worker exited as soon as Redis went away (AttributeError in kombu). After a RabbitMQ restart, a worker
could wedge instead: its consumer stopped for good, acks unsent and prefetch window full (see
CELERY_WORKER_ENABLE_PREFETCH_COUNT_REDUCTION in config/settings.py); the jobs submitted once everything else
completed show the workers still consume.
"""

import json
import os
import select
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings

from ai_core.models import AIJob, AIJobEvent
from testing.jobs import all_final, wait_for
from testing.workers import PrivateRedis

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
OUTAGE_SECONDS = float(os.environ.get("AICORE_TEST_BROKER_OUTAGE_SECONDS", "10"))


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request):
    return request.getfixturevalue(f"private_{request.param}")


def test_workers_ride_out_a_broker_outage_and_run_every_job_after_it(workers, broker, job_types, make_brands):
    (brand,) = make_brands(1)
    live = [workers.start(concurrency=4, CELERY_BROKER_URL=broker.url) for _ in range(2)]
    submitter = Submitter(brand, env=workers.env(CELERY_BROKER_URL=broker.url), log=workers.log_dir)
    workers.wait_ready(*live)
    before = submitter.submit(2)
    wait_for(lambda: all_final(before), timeout=60, what=lambda: f"jobs before the outage\n{workers.logs()}")
    # Jobs still running when the broker dies: their messages are not acknowledged yet (acks late), the case
    # where every worker used to exit.
    running = submitter.submit(4, delay_ms=3000)
    wait_for(
        lambda: AIJob.objects.filter(pk__in=running, status="running").count() == 4,
        timeout=60,
        what=lambda: f"jobs running on the workers\n{workers.logs()}",
    )

    broker.kill()
    died = time.monotonic()
    outage = OUTAGE_SECONDS if isinstance(broker, PrivateRedis) else 0  # RabbitMQ: a restart
    during = []
    for _ in range(4):  # spread over the outage; each publish fails at once, the job is kept
        during += submitter.submit(1)
        time.sleep(outage / 5)
    time.sleep(max(0.0, outage - (time.monotonic() - died)))
    assert all(proc.poll() is None for proc in live), f"a worker died during the outage\n{workers.logs()}"
    broker.start()  # the same port; Redis comes back empty (whatever was queued is lost), RabbitMQ with its data
    after = submitter.submit(2)

    every = before + running + during + after
    wait_for(lambda: all_final(every), timeout=120, what=lambda: f"every job after the outage\n{workers.logs()}")
    # And the workers still consume once all that is done: a worker whose consumer wedged after reconnecting
    # (its acks never sent, its prefetch window full) gets no more wake-ups, whatever the sweeper re-publishes.
    last = submitter.submit(2)
    every += last
    wait_for(lambda: all_final(last), timeout=60, what=lambda: f"jobs after the recovery\n{workers.logs()}")
    submitter.close()
    assert set(AIJob.objects.filter(pk__in=every).values_list("status", flat=True)) == {"completed"}
    completions = Counter(
        AIJobEvent.objects.filter(job_id__in=every, to_status="completed").values_list("job_id", flat=True)
    )
    assert completions == Counter(every)  # each job completed exactly once, whatever the duplicate wake-ups
    assert len(during) == 4  # submitting never failed while the broker was down
    assert all(proc.poll() is None for proc in live), f"a worker died\n{workers.logs()}"
    assert workers.procs == live  # the same two processes did it all: none was restarted
    for proc in live:
        log = proc.log_path.read_text(errors="replace")
        assert "Connection to broker lost" in log and "Unrecoverable error" not in log, log[-3000:]
    workers.stop_all()


class Submitter:
    """An API-like process of its own (ai_core.tests.submitter) publishing to the private broker."""

    def __init__(self, brand, *, env: dict, log: Path) -> None:
        argv = [sys.executable, "-m", "ai_core.tests.submitter", str(brand.pk)]
        with open(log / "submitter.log", "wb") as stderr:  # its failed publishes are logged there
            pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": stderr}
            self.proc = subprocess.Popen(argv, env=env, cwd=settings.BASE_DIR, text=True, **pipes)
        assert self._answer()["ready"]

    def submit(self, count: int, *, delay_ms: int = 0) -> list[int]:
        self.proc.stdin.write(f"{count} {delay_ms}\n")
        self.proc.stdin.flush()
        return self._answer()["pks"]

    def _answer(self) -> dict:
        readable, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline() if readable else ""
        assert line, f"the submitter did not answer (exit code {self.proc.poll()})"
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()
