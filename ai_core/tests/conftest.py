"""Engine fixtures: brands that survive transactional flushes, and real worker processes."""

import pytest

from ai_providers.tests.fixtures import catalogue, fake_llm, llm_env  # noqa: F401  (fallback and capacity tests)
from business.models import Brand, Company
from testing.workers import PrivateRabbitMQ, PrivateRedis, WorkerProcesses


@pytest.fixture
def make_brands(db):
    def make(count: int, company: str = "Acme") -> list[Brand]:
        owner, _ = Company.objects.get_or_create(name=company)
        return [Brand.objects.get_or_create(company=owner, name=f"{company}-{index}")[0] for index in range(count)]

    return make


@pytest.fixture(scope="module")
def workers(django_db_setup, django_db_blocker, tmp_path_factory):
    """Start/kill Celery worker processes on the test database; all stopped at the end of the module."""
    pool = WorkerProcesses(tmp_path_factory.mktemp("workers"))
    yield pool
    pool.stop_all()


@pytest.fixture
def private_redis(tmp_path):
    """A Redis server of our own, on a free port, that the test may kill and start again on that port;
    never the shared one."""
    server = PrivateRedis(tmp_path)
    if server.binary is None:
        pytest.skip("redis-server is not installed")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_rabbitmq():
    """A RabbitMQ node of our own, that the test may kill and start again; never the shared one."""
    server = PrivateRabbitMQ()
    if not server.usable():
        pytest.skip("rabbitmq-server is not installed, or we are not root (it runs as the rabbitmq user)")
    server.start()
    yield server
    server.stop()
