"""Engine test fixtures: job types and brands that survive flushes, and real worker processes."""

import pytest
from django.db import connection

from ai_core.job_type_defaults import DEFAULT_JOB_TYPES
from ai_core.models import AIJobType
from ai_core.tests.workers import WorkerProcesses
from business.models import Brand, Company


def pytest_runtest_setup(item):
    if item.get_closest_marker("postgres") and connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL and a network broker (the PostgreSQL + Redis pass)")


@pytest.fixture
def job_types(db):
    """The default job types (a transactional test's flush removes what the data migration loaded)."""
    for spec in DEFAULT_JOB_TYPES:
        AIJobType.objects.get_or_create(name=spec["name"], defaults=spec)
    return {t.name: t for t in AIJobType.objects.all()}


@pytest.fixture
def make_brands(db):
    def make(count: int, company: str = "Acme") -> list[Brand]:
        owner, _ = Company.objects.get_or_create(name=company)
        return [
            Brand.objects.get_or_create(company=owner, name=f"{company}-{index}")[0] for index in range(count)
        ]

    return make


@pytest.fixture(scope="module")
def workers(django_db_setup, django_db_blocker, tmp_path_factory):
    """Start/kill Celery worker processes on the test database; all stopped at the end of the module."""
    pool = WorkerProcesses(tmp_path_factory.mktemp("workers"))
    yield pool
    pool.stop_all()
