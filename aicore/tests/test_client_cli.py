"""The Python client and the `aicore` CLI against the real ASGI server."""

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.db import connection
from rest_framework_simplejwt.tokens import RefreshToken

from ai_core import services
from ai_core.models import AIJob, AIJobType, JobStatus
from ai_core.tests.factories import AIJobFactory
from aicore import AICoreClient, AICoreError
from aicore.cli import main

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("job_types")]

CHAT = {"messages": [{"role": "user", "content": "Bonjour"}]}


class StandInWorker:
    """Runs pending jobs through the workflow services (pending → running → 50 % → completed), as the
    engine's worker would, so these tests don't depend on a Celery worker process."""

    def __init__(self):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        try:
            while not self.stop.wait(0.05):
                for job in AIJob.objects.filter(status="pending").order_by("id"):
                    if job.description == "stay pending":
                        continue
                    started = services.job_start(job_pk=job.pk)
                    services.job_progress(job_pk=job.pk, attempt=started.attempt, percentage=50)
                    text = job.input_data["messages"][-1]["content"]
                    services.job_complete(
                        job_pk=job.pk, attempt=started.attempt, result_data={"completion": f"echo: {text}"}
                    )
        finally:
            connection.close()


@pytest.fixture
def worker():
    stand_in = StandInWorker()
    stand_in.thread.start()
    yield stand_in
    stand_in.stop.set()
    stand_in.thread.join(10)


@pytest.fixture
def connect():
    clients = []

    def open_client(*args, **kwargs):
        clients.append(AICoreClient(*args, **kwargs))
        return clients[-1]

    yield open_client
    for client in clients:
        client.close()


def test_client_submits_waits_pages_and_cancels(live_asgi, personas, worker, connect):
    client = connect(live_asgi, username="alice", password="alice-pass-1")
    assert client.brand == personas.brand_a.id  # her only brand, picked at login
    seen = []
    job = client.submit("chat_completion", CHAT, description="via client")
    final = client.wait(job, timeout=30, on_progress=lambda percent, status: seen.append((percent, status)))
    assert (final["status"], final["result_data"]["completion"]) == ("completed", "echo: Bonjour")
    assert seen[-1] == (100, "completed") and [p for p, _ in seen] == sorted(p for p, _ in seen)
    assert [e["to_status"] for e in final["events"]] == ["pending", "running", "completed"]

    pending = [client.submit("chat_completion", CHAT, description="stay pending") for _ in range(2)]
    listed = list(client.iter_jobs(page_size=1))
    assert len(listed) == 3 and {j["job_id"] for j in listed} == {
        job["job_id"],
        *(p["job_id"] for p in pending),
    }
    assert client.jobs(status="completed")["count"] == 1

    answer = client.cancel(pending[0])
    assert answer["job"]["status"] == "cancelled"
    with pytest.raises(AICoreError) as again:
        client.cancel(pending[0])
    assert (again.value.status_code, again.value.error_code) == (409, "JOB_NOT_CANCELLABLE")
    assert client.dashboard()["stats"]["cancelled"] == 1

    bob = connect(live_asgi, username="bob", password="bob-pass-1")
    with pytest.raises(AICoreError) as hidden:
        bob.job(job["job_id"])
    assert (hidden.value.status_code, hidden.value.error_code) == (404, "JOB_NOT_FOUND")


def test_client_refreshes_an_expired_token_and_manages_webhooks(live_asgi, personas, connect):
    refresh = RefreshToken.for_user(personas.alice)
    client = connect(live_asgi, access="expired-or-garbage", refresh=str(refresh))
    assert [t["name"] for t in client.job_types()][:1] == ["chat_completion"]
    assert client.access != "expired-or-garbage" and client.refresh_token != str(refresh)
    with pytest.raises(AICoreError) as bad_login:
        connect(live_asgi, username="alice", password="wrong")
    assert bad_login.value.status_code == 401

    admin = connect(live_asgi, username="adam", password="adam-pass-1")
    hook = admin.create_webhook(url="https://93.184.216.34/hooks", description="CRM")
    assert hook["secret"].startswith("whsec_")
    assert [(h["id"], "secret" in h) for h in admin.webhooks()] == [(hook["id"], False)]
    assert list(admin.webhook_deliveries(hook["id"])) == []
    with pytest.raises(AICoreError) as member:
        client.create_webhook(url="https://93.184.216.34/other")
    assert (member.value.status_code, member.value.error_code) == (403, "BRAND_ADMIN_REQUIRED")
    admin.delete_webhook(hook["id"])
    assert list(admin.webhooks()) == []


def test_client_manages_quotas_on_their_documented_path(live_asgi, personas, connect):
    admin = connect(live_asgi, username="ada", password="ada-pass-1", brand=personas.brand_a.id)

    quota = admin.create_quota(scope="brand", monthly_token_limit=1000)
    admin.update_quota(quota["id"], monthly_token_limit=2000)

    assert [(q["id"], q["monthly_token_limit"]) for q in admin.quotas()] == [(quota["id"], 2000)]
    assert admin.quota_status(quota["id"])["limits"]["tokens"] == 2000
    assert [s["quota_id"] for s in admin.quota_status()] == [quota["id"]]
    admin.delete_quota(quota["id"])
    assert admin.quotas() == []


def test_cli_submit_wait_list_show_cancel_dashboard(live_asgi, personas, worker, tmp_path, capsys):
    connect = ["--url", live_asgi, "--username", "alice", "--password", "alice-pass-1"]
    prompt = tmp_path / "prompt.json"
    prompt.write_text(json.dumps(CHAT))

    assert main([*connect, "submit", "chat_completion", "--input", str(prompt), "--wait"]) == 0
    out = capsys.readouterr().out
    job = AIJob.objects.get()
    assert f"submitted {job.job_id}" in out and "completed" in out and "echo: Bonjour" in out

    assert main([*connect, "jobs", "list", "--status", "completed"]) == 0
    assert job.job_id in capsys.readouterr().out
    assert main([*connect, "--json", "jobs", "show", job.job_id]) == 0
    assert json.loads(capsys.readouterr().out)["result_data"] == {"completion": "echo: Bonjour"}

    assert main([*connect, "submit", "chat_completion", "--input", str(prompt), "--description", "stay pending"]) == 0
    waiting = AIJob.objects.get(status="pending")
    assert waiting.job_id in capsys.readouterr().out
    assert main([*connect, "jobs", "cancel", waiting.job_id]) == 0
    assert "cancelled" in capsys.readouterr().out
    assert main([*connect, "jobs", "cancel", waiting.job_id]) == 2
    assert "JOB_NOT_CANCELLABLE" in capsys.readouterr().err

    assert main([*connect, "dashboard"]) == 0
    out = capsys.readouterr().out
    assert "Top job types" in out and "chat_completion" in out
    assert main([*connect, "--json", "dashboard"]) == 0
    stats = json.loads(capsys.readouterr().out)["stats"]
    assert (stats["total_jobs"], stats["completed"], stats["cancelled"]) == (2, 1, 1)


def test_cli_tables_fit_80_columns_and_never_cut_a_status(live_asgi, personas, capsys, monkeypatch):
    long_words = "a description long enough to need several lines in an eighty column terminal, " * 2
    jobs = [
        AIJobFactory(
            brand=personas.brand_a,
            created_by=personas.alice,
            status=status,
            job_type=AIJobType.objects.get(name="content_analysis"),  # the longest type name
            description=long_words + "supercalifragilisticexpialidocious-unbreakable-word",
        )
        for status in JobStatus.values
    ]
    monkeypatch.setenv("COLUMNS", "80")  # what rich reads as the terminal's width
    connect = ["--url", live_asgi, "--username", "alice", "--password", "alice-pass-1"]

    for command in (["jobs", "list"], ["dashboard"], ["job-types"]):
        assert main([*connect, *command]) == 0
        out = capsys.readouterr().out
        assert max(map(len, out.splitlines())) <= 80, out
        if command != ["job-types"]:
            for job in jobs:
                [line] = [line for line in out.splitlines() if job.job_id in line]
                assert f" {job.status} " in f" {line} ", line  # the whole word, on the job's own line
    assert "content_analysis" in out


def test_cli_is_installed_as_a_console_script():
    script = Path(sys.executable).parent / "aicore"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "submit" in done.stdout and "dashboard" in done.stdout
