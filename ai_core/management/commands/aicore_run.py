"""`make run`: the API (uvicorn, ASGI) and a Celery worker side by side; Ctrl-C stops both."""

import signal
import socket
import subprocess
import sys
import time

from django.core.management.base import BaseCommand, CommandError

from ai_core.engine.worker import worker_command

STOP_GRACE_SECONDS = 10


class Command(BaseCommand):
    help = "Run the API on --host:--port and a job worker; stop both with Ctrl-C (or SIGTERM)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-worker", action="store_true", help="API only (workers run elsewhere)")

    def handle(self, *args, host: str, port: int, no_worker: bool, **options):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if probe.connect_ex((host, port)) == 0:
                raise CommandError(
                    f"{host}:{port} is already in use (is `make run` already running? stop it, or pass PORT=…)"
                )
        # --no-proxy-headers: the client IP is decided by AICORE_TRUSTED_PROXIES (business.proxies), never by
        # uvicorn trusting X-Forwarded-For from loopback.
        api = ["-m", "uvicorn", "config.asgi:application", "--host", host, "--port", str(port), "--no-proxy-headers"]
        commands = {"api": [sys.executable, *api]}
        if not no_worker:
            commands["worker"] = worker_command("-l", "info", "-n", f"aicore-run-{port}@%h")
        children = {name: subprocess.Popen(argv) for name, argv in commands.items()}
        self.stdout.write(
            self.style.SUCCESS(
                f"AI Core on http://{host}:{port}/ (API docs at /api/docs/)"
                + ("" if no_worker else " with a worker")
                + " — Ctrl-C stops everything"
            )
        )

        stopping = False

        def request_stop(signum, _frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        exit_code = 0
        while not stopping:
            exited = [name for name, child in children.items() if child.poll() is not None]
            if exited:
                exit_code = children[exited[0]].returncode or 1
                self.stderr.write(f"{exited[0]} stopped (exit {children[exited[0]].returncode}); stopping the rest")
                break
            time.sleep(0.2)
        self._stop_all(children)
        if exit_code:
            raise CommandError(f"stopped with exit code {exit_code}")

    @staticmethod
    def _stop_all(children: dict[str, subprocess.Popen]) -> None:
        for child in children.values():
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
