"""business.sql.prepared_cursor on PostgreSQL: a long hot statement with many parameters (above psycopg's own
conversion cache, 4 KB / 50) runs prepared, and right, run after run."""

import pytest
from django.db import connection

from business.sql import prepared_cursor


@pytest.mark.django_db
def test_a_long_statement_with_many_parameters_runs_right_run_after_run():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's server-side binding only")
    values = list(range(80))  # more than psycopg's 50
    padding = " ".join(["/* a long hot statement */"] * 200)  # longer than psycopg's 4 KB
    sql = f"SELECT {', '.join(['%s::integer'] * len(values))} {padding}"
    for shift in (0, 1, 2):
        with prepared_cursor() as cursor:
            cursor.execute(sql, [v + shift for v in values])
            assert list(cursor.fetchone()) == [v + shift for v in values]
