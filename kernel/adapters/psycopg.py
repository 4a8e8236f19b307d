"""psycopg: the server-binding cursor of the hot statements (business.sql.prepared_cursor), the only module that
touches psycopg's private cursor API (`Cursor._convert_query`, `Cursor._query`).

Kept for correctness, not speed: Django's query log (DEBUG, `assertNumQueries`, `connection.queries`) reads a
psycopg cursor's statement from `_query` (Django itself does, in its PostgreSQL backend's `last_executed_query`),
and psycopg leaves `_query` unset when it runs a prepared statement; so this cursor sets it, and a prepared hot
statement is logged with its placeholders ($1…) like any other. kernel/tests/test_adapters_psycopg.py pins it.

(A per-process cache of the long statements' placeholder conversion, through psycopg's private `_queries`, was
removed: it saved ~0.1–0.2 ms of CPU of a ~7 ms gateway call, under the 10 % a private API must buy;
docs/PERFORMANCE.md, "Private framework APIs".)
"""

import psycopg


class ServerBindingCursor(psycopg.Cursor):
    """A psycopg cursor with server-side binding (so psycopg prepares its statements), logged by Django."""

    def _convert_query(self, query, params=None):
        converted = super()._convert_query(query, params)
        self._query = converted
        return converted
