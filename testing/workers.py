"""Real Celery worker processes for tests, pointed at the test database and the test broker."""

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

from ai_core.engine.worker import worker_command
from config.celery_app import app

# Short periods so crash recovery, retries and sweeps happen within seconds in tests.
FAST_ENGINE = {
    "AICORE_HEARTBEAT_MS": "300",
    "AICORE_CANCEL_POLL_MS": "200",
    "AICORE_REAP_AFTER_MS": "1500",
    "AICORE_SWEEP_INTERVAL_MS": "500",
    "AICORE_SWEEP_PENDING_AFTER_MS": "2000",
    "AICORE_RETRY_BASE_MS": "100",
    "AICORE_RETRY_MAX_MS": "400",
}


def database_url_of_tests() -> str:
    """The URL of the database this test process uses (pytest-django's test database)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = quote(db["USER"] or "postgres") + (f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def purge_broker() -> None:
    with app.connection_for_write() as conn:
        app.control.purge(connection=conn)


class WorkerProcesses:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []
        self.started = 0

    def env(self, **overrides: str) -> dict[str, str]:
        env = dict(os.environ, **FAST_ENGINE)
        env.update(
            DATABASE_URL=database_url_of_tests(),
            CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
            AICORE_ENV="test",
            DB_POOL="1",
            DB_POOL_MAX_SIZE="4",
            PYTHONWARNINGS="ignore",
        )
        env.update(overrides)
        return env

    def start(self, *, concurrency: int = 4, **env: str) -> subprocess.Popen:
        self.started += 1
        name = f"w{self.started}-{os.getpid()}"
        with open(self.log_dir / f"{name}.log", "wb") as log:  # the child keeps its own descriptor
            argv = worker_command(
                *f"-P threads -c {concurrency} -l info -n {name}@%h".split(),
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            )
            proc = subprocess.Popen(
                argv, env=self.env(**env), stdout=log, stderr=subprocess.STDOUT, cwd=settings.BASE_DIR
            )
        self.procs.append(proc)
        proc.log_path = self.log_dir / f"{name}.log"
        return proc

    def wait_ready(self, *procs: subprocess.Popen, timeout: float = 60) -> None:
        """Until each worker logged Celery's "ready." line (connected, consuming)."""
        deadline = time.monotonic() + timeout
        for proc in procs:
            while b" ready." not in proc.log_path.read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"worker did not start:\n{self.logs()}")
                time.sleep(0.1)

    def kill(self, proc: subprocess.Popen) -> None:
        """kill -9: no shutdown code runs, unacknowledged messages and running attempts are abandoned."""
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def logs(self) -> str:
        return "\n".join(path.read_text(errors="replace")[-3000:] for path in sorted(self.log_dir.glob("*.log")))


class PrivateRedis:
    """A redis-server of the test's own on a free port of 6300-6399 (never the shared 6379), which a test may
    kill and start again on the same port, as a broker outage does."""

    def __init__(self, directory: Path) -> None:
        self.binary = shutil.which("redis-server")
        self.directory = directory
        self.port = free_port(range(6300, 6400))
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [*argv, "--dir", str(self.directory)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + 10
        try:
            while not _pings(client):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the private redis-server on port {self.port} did not start")
                time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """kill -9: the server and everything it held (queues, unacknowledged messages) are gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()


class PrivateRabbitMQ:
    """A RabbitMQ node of the test's own (its node name, ports and data directory; never the shared node on
    5672), which a test may kill and start again as a broker restart does. Its data directory survives the
    restart, as a real node's does: durable queues and persistent messages come back."""

    def __init__(self) -> None:
        self.binary = shutil.which("rabbitmq-server")
        self.port = free_port(range(5600, 5700))
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.proc: subprocess.Popen | None = None
        self.directory: Path | None = None

    def usable(self) -> bool:
        # rabbitmq-server runs as the rabbitmq user (root hands over to it) and needs that user's home
        return self.binary is not None and os.geteuid() == 0 and Path("/var/lib/rabbitmq").is_dir()

    def start(self) -> None:
        import pwd
        import tempfile

        if self.directory is None:  # /tmp itself: the rabbitmq user cannot enter pytest's private tmp dirs
            self.directory = Path(tempfile.mkdtemp(prefix="aicore-rabbitmq-"))
            (self.directory / "enabled_plugins").write_text("")
            (self.directory / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{self.port}\n")
            owner = pwd.getpwnam("rabbitmq")
            for path in [self.directory, *self.directory.iterdir()]:
                os.chown(path, owner.pw_uid, owner.pw_gid)
        node = f"aicore_test_{self.port}_{os.getpid()}@localhost"
        env = dict(
            os.environ,
            HOME="/var/lib/rabbitmq",  # its Erlang cookie
            RABBITMQ_NODENAME=node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(free_port(range(25600, 25700))),
            RABBITMQ_MNESIA_BASE=str(self.directory / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.directory / "log"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.directory / "enabled_plugins"),
            RABBITMQ_CONFIG_FILE=str(self.directory / "rabbitmq"),
        )
        with open(self.directory / "server.out", "ab") as out:
            # Started as the rabbitmq user, the script runs the node itself (as root it would hand over through
            # su, into a session of su's own): the whole node stays in the process group started here.
            self.proc = subprocess.Popen(
                [self.binary],
                env=env,
                cwd=self.directory,
                user="rabbitmq",
                group="rabbitmq",
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 90
        while not _accepts(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the private RabbitMQ did not start: {self.directory / 'server.out'}")
            time.sleep(0.2)

    def kill(self) -> None:
        """kill -9 of the node's whole process group (the start script, the Erlang VM and its helpers)."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signum)  # the group this node's start made (start_new_session)
            self.proc.wait()
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # what the start script left (the VM's helpers)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while _accepts(self.port) and time.monotonic() < deadline:  # the VM outlives the start script briefly
            time.sleep(0.1)


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def free_port(candidates: range) -> int:
    """A port nobody listens on (tried in random order, so parallel test runs rarely pick the same one)."""
    ports = list(candidates)
    random.shuffle(ports)
    for port in ports:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise AssertionError(f"no free port in {candidates}")


def _pings(client) -> bool:
    try:
        return client.ping()
    except Exception:
        return False
