"""business.sql.prepared_cursor on PostgreSQL: the placeholders of a long hot statement are converted once per
process, however long it is and however many parameters it has (psycopg's own cache stops at 4 KB / 50)."""

import pytest
from django.db import connection

from business.sql import _preparing_cursor_class, prepared_cursor


@pytest.mark.django_db
def test_a_long_statement_with_many_parameters_is_converted_once_and_runs_right():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's server-side binding only")
    values = list(range(80))  # more than psycopg's 50
    padding = " ".join(["/* a long hot statement */"] * 200)  # longer than psycopg's 4 KB
    sql = f"SELECT {', '.join(['%s::integer'] * len(values))} {padding}"
    conversions = _preparing_cursor_class().conversions
    misses = conversions.cache_info().misses
    for shift in (0, 1, 2):
        with prepared_cursor() as cursor:
            cursor.execute(sql, [v + shift for v in values])
            assert list(cursor.fetchone()) == [v + shift for v in values]
    info = conversions.cache_info()
    assert info.misses == misses + 1 and info.hits >= 2
