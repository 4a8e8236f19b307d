"""`make run`: the API (uvicorn, in this process) and a supervised Celery worker; Ctrl-C stops both.

One process sets up (with --setup: migrate, demo data) and serves, because every further `manage.py` process
pays Django's start-up again. The worker is a child process, restarted with backoff when it dies
(`ai_core/engine/supervisor.py`).
"""

import signal
import socket

import uvicorn
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from ai_core.engine.supervisor import WorkerSupervisor
from ai_core.engine.worker import worker_command

# Open streams (SSE) would otherwise hold a Ctrl-C until their clients leave.
GRACEFUL_SHUTDOWN_SECONDS = 5


def api_server(host: str, port: int) -> uvicorn.Server:
    """The API's ASGI server. Its logs go through Django's LOGGING (log_config=None), like every other log."""
    config = uvicorn.Config(
        "config.asgi:application",
        host=host,
        port=port,
        log_config=None,
        # The client IP is decided by AICORE_TRUSTED_PROXIES (business.proxies), never by uvicorn trusting
        # X-Forwarded-For from loopback.
        proxy_headers=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    return uvicorn.Server(config)


class Command(BaseCommand):
    help = "Run the API on --host:--port and a supervised job worker; stop both with Ctrl-C (or SIGTERM)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true", help="API only (workers run elsewhere)")
        parser.add_argument("--setup", action="store_true", help="migrate and create the demo data first")

    def handle(self, *args, host: str, port: int, no_worker: bool, setup: bool, **options):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if probe.connect_ex((host, port)) == 0:
                raise CommandError(
                    f"{host}:{port} is already in use (is `make run` already running? stop it, or pass PORT=…)"
                )
        if setup:
            call_command("migrate", interactive=False, verbosity=0)
            call_command("aicore_demo", stdout=self.stdout, stderr=self.stderr)

        stop_signals: list[int] = []

        def request_stop(signum, _frame):
            # Before and after uvicorn serves (it handles the signals itself meanwhile, and re-raises them here).
            stop_signals.append(signum)

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        supervisor = None
        if not no_worker:
            supervisor = WorkerSupervisor(worker_command("-l", "info", "-n", f"aicore-run-{port}@%h"))
            supervisor.start()
        self.stdout.write(
            self.style.SUCCESS(
                f"AI Core on http://{host}:{port}/ (API docs at /api/docs/)"
                + ("" if no_worker else " with a worker")
                + " — Ctrl-C stops everything"
            )
        )
        self.stdout.flush()
        server = api_server(host, port)
        try:
            if not stop_signals:
                server.run()
        finally:
            if supervisor is not None:
                supervisor.stop()
        if not stop_signals and not server.started:
            raise CommandError("the API server did not start")
