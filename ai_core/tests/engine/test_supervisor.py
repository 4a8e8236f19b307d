"""`make run` keeps its worker alive: `manage.py aicore_run` restarts a worker that died (kill -9) with backoff,
logs the death, goes on running jobs, and still stops everything on SIGINT."""

import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from ai_core.engine.retry import RetryPolicy
from ai_core.engine.supervisor import RESTART_POLICY, WorkerSupervisor, describe_exit
from testing.jobs import wait_for
from testing.workers import FAST_ENGINE


class RecordingPolicy(RetryPolicy):
    """The restart policy with tiny waits, remembering which restart in a row each wait was asked for."""

    def __init__(self):
        super().__init__(base_seconds=0.01, factor=2.0, max_seconds=0.04)
        object.__setattr__(self, "asked", [])

    def delay(self, attempt: int) -> float:
        self.asked.append(attempt)
        return super().delay(attempt)


def _exits_with(code: int, after_seconds: float = 0.0) -> list[str]:
    return [sys.executable, "-c", f"import sys, time; time.sleep({after_seconds}); sys.exit({code})"]


def test_a_worker_that_keeps_dying_is_restarted_with_a_growing_capped_backoff(caplog):
    policy = RecordingPolicy()
    supervisor = WorkerSupervisor(_exits_with(3), policy=policy, stable_after_seconds=3600)
    with caplog.at_level(logging.INFO, logger="ai_core.engine.supervisor"):
        supervisor.start()
        wait_for(lambda: supervisor.quick_deaths >= 5, timeout=30, what="five deaths in a row")
        supervisor.stop()
    deaths = [r.getMessage() for r in caplog.records if "died" in r.getMessage()]
    assert len(deaths) >= 5
    assert all("exit code 3" in line and "restarting it in" in line for line in deaths)
    assert "restart 5 in a row" in deaths[4]
    assert policy.asked[:5] == [1, 2, 3, 4, 5]  # each wait a step further up the exponential backoff
    assert RESTART_POLICY.step(1) == 1.0 and RESTART_POLICY.step(100) == RESTART_POLICY.max_seconds == 60.0


def test_a_worker_that_ran_stably_before_it_died_starts_the_backoff_again(caplog):
    policy = RecordingPolicy()
    supervisor = WorkerSupervisor(_exits_with(1, after_seconds=0.3), policy=policy, stable_after_seconds=0.2)
    with caplog.at_level(logging.INFO, logger="ai_core.engine.supervisor"):
        supervisor.start()
        wait_for(lambda: sum("died" in r.getMessage() for r in caplog.records) >= 3, timeout=30, what="three deaths")
        supervisor.stop()
    assert supervisor.quick_deaths == 1
    assert set(policy.asked) == {1}
    assert all("restart 1 in a row" in r.getMessage() for r in caplog.records if "died" in r.getMessage())


def test_stop_ends_the_worker_and_starts_no_other():
    supervisor = WorkerSupervisor(_exits_with(0, after_seconds=60), policy=RecordingPolicy())
    supervisor.start()
    worker = supervisor.process
    supervisor.stop()
    assert worker.returncode == -signal.SIGTERM
    assert supervisor.process is worker
    assert describe_exit(-9) == "exit code -9 (SIGKILL)"


# --- the real command, as `make run` starts it ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> set[int]:
    """Live child processes of `pid`, from /proc (a reaped child is gone from there)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker process through /proc")
@pytest.mark.skipif(
    settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3",
    reason="brings its own SQLite database and embedded broker: the PostgreSQL pass would repeat it unchanged",
)
def test_make_run_restarts_a_killed_worker_and_stops_cleanly_on_sigint(tmp_path):
    port = _free_port()
    env = dict(
        os.environ,
        **FAST_ENGINE,
        DATABASE_URL=f"sqlite:///{tmp_path / 'aicore.sqlite3'}",
        CELERY_BROKER_URL=f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
        PYTHONWARNINGS="ignore",
    )
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        run = subprocess.Popen(
            [sys.executable, "manage.py", "aicore_run", "--setup", "--port", str(port)],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def logs() -> str:
        return log_path.read_text(errors="replace")

    def workers_ready() -> int:
        return logs().count(" ready.")

    seen: list[int] = []  # every worker pid, to clean up after a failure
    try:
        wait_for(lambda: workers_ready() == 1 or run.poll() is not None, timeout=60, what=lambda: logs())
        assert run.poll() is None, logs()
        (worker,) = _children(run.pid)
        seen.append(worker)

        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: workers_ready() == 2, timeout=60, what=lambda: f"a restarted worker\n{logs()}")
        (restarted,) = _children(run.pid)
        seen.append(restarted)
        assert restarted != worker
        assert f"worker (pid {worker}) died with exit code -9 (SIGKILL)" in logs()
        assert "restarting it in" in logs()

        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            login = client.post("/auth/login/", json={"username": "admin", "password": "aicore-demo"})
            assert login.status_code == 200, login.text
            headers = {"Authorization": f"Bearer {login.json()['access']}", "X-Brand-ID": "1"}
            job = {
                "job_type": "chat_completion",
                "input_data": {"model": "echo-1", "messages": [{"role": "user", "content": "after the kill"}]},
            }
            created = client.post("/ai/jobs/", json=job, headers=headers)
            assert created.status_code in {200, 201, 202}, created.text
            job_url = f"/ai/jobs/{created.json()['id']}/"

            def status() -> str:
                return client.get(job_url, headers=headers).json()["status"]

            wait_for(lambda: status() == "completed", timeout=30, what=lambda: f"the job to complete\n{logs()}")

        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=30) == 0, logs()
        assert not Path(f"/proc/{restarted}").exists()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        for pid in seen:
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
