"""psycopg: a server-binding cursor that remembers the placeholder conversion of long statements (the only module
that touches psycopg's private query API: `psycopg._queries`, `Cursor._query_cls`, `Cursor._convert_query` and
`Cursor._query`).

Kept for the gateway: psycopg remembers how it converts a statement's placeholders (`%s` → `$1`…) only for
statements under 4 KB with at most 50 parameters, and the hot ones of AI Core are longer (the job's creation: ~60
parameters; the final transition with its usage row: over 4 KB). Converting them again cost ~0.3 ms of CPU a
statement, three per gateway call (docs/PERFORMANCE.md, "Private framework APIs": the figures with and without,
DB_REMEMBER_HOT_CONVERSIONS=0 being psycopg's own conversion). These statements are few and fixed in shape, so a
small LRU holds them all. kernel/tests/test_adapters_psycopg.py pins what this relies on.
"""

from functools import cache, lru_cache

import psycopg
from psycopg._queries import PostgresQuery, _query2pg_nocache

#: psycopg's conversion of a statement's placeholders, remembered whatever its size: (query bytes, encoding)
#: -> (converted query, formats, order, parts), as psycopg's own cache keeps it for short statements.
hot_conversion = lru_cache(maxsize=256)(_query2pg_nocache)


class HotQuery(PostgresQuery):
    """A PostgresQuery whose conversion comes from `hot_conversion`."""

    __slots__ = ()

    def convert(self, query, vars) -> None:
        if vars is None or not isinstance(query, str | bytes):
            super().convert(query, vars)
            return
        self.query, self._want_formats, self._order, self._parts = hot_conversion(
            self._ensure_bytes(query), self._tx.encoding
        )
        self.dump(vars)


@cache
def server_binding_cursor_class(*, remember_conversions: bool = True) -> type[psycopg.Cursor]:
    """A psycopg cursor with server-side binding (so psycopg prepares its statements), remembering long
    statements' conversions unless `remember_conversions` is False (psycopg's own conversion, for comparison)."""

    class ServerBindingCursor(psycopg.Cursor):
        conversions = hot_conversion  # its cache_info() tells the tests it serves

        def _convert_query(self, query, params=None):
            # Django's query log (debug, assertNumQueries) reads the statement from `_query`, which psycopg
            # leaves unset when it runs a prepared one: logged with its placeholders ($1…).
            converted = super()._convert_query(query, params)
            self._query = converted
            return converted

    if remember_conversions:
        ServerBindingCursor._query_cls = HotQuery
    return ServerBindingCursor
