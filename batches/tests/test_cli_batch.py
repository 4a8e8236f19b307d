"""`aicore batch submit FILE.jsonl --wait` and the client's batch methods against the served app."""

import json

import pytest

from ai_core.models import AIJob
from aicore.cli import main
from aicore.client import AICoreClient, AICoreError
from aicore.tests.test_client_cli import StandInWorker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("job_types")]


@pytest.fixture
def worker():
    stand_in = StandInWorker()
    stand_in.thread.start()
    yield stand_in
    stand_in.stop.set()
    stand_in.thread.join(10)


def test_cli_batch_submit_waits_with_a_progress_bar_and_prints_results(live_asgi, personas, worker, tmp_path, capsys):
    connect = ["--url", live_asgi, "--username", "alice", "--password", "alice-pass-1"]
    lines = [
        {"custom_id": f"p{i}", "input_data": {"messages": [{"role": "user", "content": f"n{i}"}]}} for i in range(7)
    ]
    source = tmp_path / "jobs.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines))

    assert main([*connect, "batch", "submit", str(source), "--wait", "--poll", "0.1", "--timeout", "30"]) == 0

    out = capsys.readouterr().out
    assert "submitted batch_" in out and "7" in out
    batch_id = out.split("submitted ")[1].split()[0]
    assert AIJob.objects.filter(batch_link__batch__batch_id=batch_id, status="completed").count() == 7
    assert main([*connect, "batch", "results", batch_id]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["custom_id"] for r in rows] == [f"p{i}" for i in range(7)]
    assert rows[3]["result"] == {"completion": "echo: n3"}


def test_client_batch_errors_carry_the_error_code(live_asgi, personas):
    with AICoreClient(live_asgi, username="alice", password="alice-pass-1") as client:
        bad = b'{"input_data": {"messages": []}}\n'
        with pytest.raises(AICoreError) as refused:
            client.submit_batch("chat_completion", bad)
        assert refused.value.error_code == "BATCH_VALIDATION_ERROR"
        assert refused.value.body["errors"][0]["line"] == 0
        with AICoreClient(live_asgi, username="bob", password="bob-pass-1") as bob:
            created = client.submit_batch(
                "chat_completion", b'{"input_data": {"messages": [{"role": "user", "content": "x"}]}}\n'
            )
            with pytest.raises(AICoreError) as hidden:
                bob.batch(created["batch_id"])
            assert hidden.value.status_code == 404
        assert client.cancel_batch(created["id"])["cancelled"] == 1
