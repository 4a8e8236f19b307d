"""kernel/adapters/psycopg.py pinned to psycopg and Django: a prepared statement run through its cursor is logged
by Django with its text. A psycopg upgrade that renames `_convert_query` or `_query`, or a Django one that stops
reading `_query` for the log, fails here. Its statements' `%s` are numbered as psycopg itself would number them."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from business.sql import prepared_cursor
from kernel.adapters.psycopg import ServerBindingCursor, numbered


def test_placeholders_are_numbered_in_order_and_a_doubled_percent_is_one():
    assert (
        numbered("SELECT %s, %s FROM t WHERE a LIKE 'x%%' AND b = %s")
        == "SELECT $1, $2 FROM t WHERE a LIKE 'x%' AND b = $3"
    )
    assert numbered("SELECT 1") == "SELECT 1"


@pytest.mark.parametrize("query", ["SELECT %(name)s", "SELECT %b", "SELECT %t", "SELECT 5 %", "SELECT '%d'"])
def test_a_placeholder_other_than_percent_s_is_refused(query):
    import psycopg

    with pytest.raises(psycopg.ProgrammingError):
        numbered(query)


@pytest.mark.django_db
def test_a_prepared_statement_runs_right_and_sets_the_query_djangos_log_reads():
    if connection.vendor != "postgresql":
        pytest.skip("psycopg on PostgreSQL only")
    connection.ensure_connection()
    for shift in (0, 1):
        with ServerBindingCursor(connection.connection) as cursor:
            cursor.execute("SELECT %s::integer + 0 AS pinned, %s::text", [41 + shift, "x"], prepare=True)
            assert cursor.fetchone() == (41 + shift, "x")
            assert cursor._query.query == b"SELECT $1::integer + 0 AS pinned, $2::text"  # prepared: psycopg's unset


@pytest.mark.django_db
def test_djangos_query_log_shows_a_prepared_hot_statement():
    if connection.vendor != "postgresql":
        pytest.skip("psycopg on PostgreSQL only")
    with CaptureQueriesContext(connection) as captured:
        for value in (1, 2):
            with prepared_cursor() as cursor:
                cursor.execute("SELECT %s::integer AS logged_hot_statement", [value])
                assert cursor.fetchone() == (value,)
    assert [q["sql"] for q in captured.captured_queries] == ["SELECT $1::integer AS logged_hot_statement"] * 2


@pytest.mark.django_db
def test_a_hot_statement_reads_as_psycopgs_own_conversion_would():
    if connection.vendor != "postgresql":
        pytest.skip("psycopg on PostgreSQL only")
    query = "SELECT %s::text || '%%', %s::integer * 2, '%%s'"
    with connection.cursor() as plain:
        plain.execute(query, ["a", 21])
        expected = plain.fetchone()
    with prepared_cursor() as cursor:
        cursor.execute(query, ["a", 21])
        assert cursor.fetchone() == expected == ("a%", 42, "%s")
        cursor.execute("SELECT 1 WHERE '%' = '%'")  # no parameters: the text as it is, as psycopg's
        assert cursor.fetchone() == (1,)


@pytest.mark.django_db
def test_a_hot_statements_lists_go_in_binary_and_read_back_the_same():
    if connection.vendor != "postgresql":
        pytest.skip("psycopg on PostgreSQL only")
    awkward = ["it's", 'a "quote"', "back\\slash", "{brace}", "line\nbreak", "é", None]
    with prepared_cursor() as cursor:
        cursor.execute("SELECT %s::text[], %s::bigint[], %s::text", [awkward, [1, None, 3], "plain"])
        assert cursor.fetchone() == (awkward, [1, None, 3], "plain")
        assert [int(f) for f in cursor._query.formats] == [1, 1, 0]  # the lists binary, the text as text
    with connection.cursor() as plain:  # the connection's other cursors are not affected
        plain.execute("SELECT %s::bigint[]", [[1, 2]])
        assert plain.fetchone() == ([1, 2],)
