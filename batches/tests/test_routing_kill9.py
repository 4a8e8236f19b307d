"""A worker process killed -9 in the middle of a provider batch's submission: the next round resumes from what
was recorded and the provider never gets a second batch (PostgreSQL: another process shares the database)."""

import os
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from ai_core.models import AIJob
from batches import routing
from batches.models import ProviderBatch
from batches.models import ProviderBatchStatus as PB
from batches.services import BatchLine, batch_create
from conftest import Personas
from testing.fake_llm import FakeLLM
from testing.workers import database_url_of_tests

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

DIE_AT = """
import os, signal, sys
import django
django.setup()
from batches import routing
step = sys.argv[2]
routing.step_hook = lambda name: os.kill(os.getpid(), signal.SIGKILL) if name == step else None
routing.provider_batch_submit(int(sys.argv[1]))
"""


@pytest.mark.parametrize(
    "model, step",
    [("gpt-4o-mini", "uploaded"), ("gpt-4o-mini", "created"), ("claude-sonnet-4-5", "created")],
)
def test_a_worker_killed_during_submission_never_creates_a_second_provider_batch(
    settings, catalogue, job_types, model, step
):
    with FakeLLM() as fake:
        key = f"sk-test-{model}-{step}"  # a client of its own: a cached one may keep a connection to an earlier server
        settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL = key, fake.openai_base_url
        settings.ANTHROPIC_API_KEY, settings.ANTHROPIC_BASE_URL = key, fake.base_url
        settings.AICORE_PROVIDER_BATCH_MIN_JOBS = 1
        settings.AICORE_PROVIDER_BATCH_POLL_SECONDS = 0
        people = Personas()
        lines = [
            BatchLine(input_data={"model": model, "messages": [{"role": "user", "content": f"n{i}"}]}) for i in range(3)
        ]
        batch_create(
            brand=people.brand_a, user=people.alice, job_type="chat_completion", lines=lines, completion_window="24h"
        )
        (pk,) = routing.route_waiting()
        env = dict(
            os.environ,
            DATABASE_URL=database_url_of_tests(),
            AICORE_ENV="test",
            OPENAI_API_KEY=key,
            OPENAI_BASE_URL=fake.openai_base_url,
            ANTHROPIC_API_KEY=key,
            ANTHROPIC_BASE_URL=fake.base_url,
            PYTHONWARNINGS="ignore",
        )

        died = subprocess.run([sys.executable, "-c", DIE_AT, str(pk), step], env=env, timeout=120)

        assert died.returncode == -9
        recorded = ProviderBatch.objects.get(pk=pk)
        assert recorded.status == (PB.PREPARING if step == "uploaded" else PB.SUBMITTING)
        assert recorded.provider_batch_id == ""  # the dead worker never noted what it created
        assert fake.server.batches_created == (0 if step == "uploaded" else 1)
        ProviderBatch.objects.filter(pk=pk).update(leased_until=timezone.now() - timedelta(seconds=1))  # lease ran out
        routing.upkeep_round()

        assert fake.server.batches_created == 1
        ended = ProviderBatch.objects.get(pk=pk)
        assert ended.status == PB.ENDED, (ended.error_message, ended.provider_status)
        store = fake.server.openai_batches if model.startswith("gpt") else fake.server.anthropic_batches
        assert list(store) == [ended.provider_batch_id]  # the one the dead worker created, adopted
        assert AIJob.objects.filter(status="completed").count() == 3


def test_answers_are_written_by_several_threads_each_job_once(settings, catalogue, job_types):
    with FakeLLM() as fake:
        settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL = "sk-test-writers", fake.openai_base_url
        settings.AICORE_PROVIDER_BATCH_MIN_JOBS = 1
        settings.AICORE_PROVIDER_BATCH_POLL_SECONDS = 0
        settings.AICORE_PROVIDER_BATCH_WRITERS = 4
        people = Personas()
        content = "x [fake usage=1000,500]"
        lines = [
            BatchLine(input_data={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"{content} {i}"}]})
            for i in range(40)
        ]
        batch_create(
            brand=people.brand_a, user=people.alice, job_type="chat_completion", lines=lines, completion_window="24h"
        )

        routing.upkeep_round()

        from ai_usage.models import AIJobUsage

        assert AIJob.objects.filter(status="completed", attempts=1).count() == 40
        assert AIJobUsage.objects.count() == 40
        assert set(AIJobUsage.objects.values_list("total_cost", flat=True)) == {Decimal("0.000225")}
