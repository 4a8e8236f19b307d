"""kernel/adapters/psycopg.py pinned to psycopg: what it relies on of psycopg's private query API. A psycopg upgrade
that renames or reshapes it (the conversion function, PostgresQuery's attributes, `_query_cls`, `_convert_query`,
`_query`) fails here; one that lifts psycopg's own cache limits makes the adapter unneeded, and fails here too."""

import psycopg
import pytest
from django.db import connection
from psycopg import _queries

from kernel.adapters.psycopg import HotQuery, hot_conversion, server_binding_cursor_class


def test_psycopg_caches_only_short_statements_which_is_why_the_adapter_exists():
    assert (_queries.MAX_CACHED_STATEMENT_LENGTH, _queries.MAX_CACHED_STATEMENT_PARAMS) == (4096, 50)
    assert issubclass(HotQuery, _queries.PostgresQuery)
    assert psycopg.Cursor._query_cls is _queries.PostgresQuery


def test_the_remembered_conversion_is_psycopgs_own():
    sql = b"SELECT %s::integer, %s::text WHERE %s"
    assert hot_conversion(sql, "utf-8") == _queries._query2pg_nocache(sql, "utf-8")
    converted, formats, order, parts = hot_conversion(sql, "utf-8")
    assert converted == b"SELECT $1::integer, $2::text WHERE $3" and order is None and len(formats) == 3


@pytest.mark.django_db
@pytest.mark.parametrize("remember", [True, False])
def test_a_long_prepared_statement_runs_right_and_is_logged_with_its_placeholders(remember):
    if connection.vendor != "postgresql":
        pytest.skip("psycopg on PostgreSQL only")
    connection.ensure_connection()
    values = list(range(80))  # more than psycopg's 50 parameters
    padding = " ".join(["/* a long statement, pinned */"] * 200)  # longer than its 4 KB
    sql = f"SELECT {', '.join(['%s::integer'] * len(values))} {padding}"
    misses = hot_conversion.cache_info().misses
    cursor_class = server_binding_cursor_class(remember_conversions=remember)
    for shift in (0, 1):
        with cursor_class(connection.connection) as cursor:
            cursor.execute(sql, [v + shift for v in values], prepare=True)
            assert list(cursor.fetchone()) == [v + shift for v in values]
            assert type(cursor._query) is (HotQuery if remember else _queries.PostgresQuery)
            assert cursor._query.query.startswith(b"SELECT $1::integer, $2::integer")  # what Django's log reads
    assert hot_conversion.cache_info().misses == misses + (1 if remember else 0)
