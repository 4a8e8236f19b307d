"""psycopg: the server-binding cursor of the hot statements (business.sql.prepared_cursor), the only module that
touches psycopg's private cursor API (`Cursor._convert_query`, `Cursor._query`).

The cursor is psycopg's public `RawCursor` (PostgreSQL's own `$1` placeholders, no parsing of the statement per
execution): the hot statements are written with `%s`, as every statement of the project, and turned into `$n`
here once per statement text (`numbered`, a per-process LRU of our own). psycopg converts `%s` itself on every
execution and caches that conversion only for statements under 4 KB and 50 parameters; the gateway's creating
statement has 58 parameters, and its conversion (a regular-expression split of ~2.5 KB on every call) was ~11 %
of the API workers' GIL-holding samples under bench.gateway's 16 clients (py-spy, 2026-12-03), the largest piece
of a call outside the provider SDK.

The private part is kept for correctness, not speed: Django's query log (DEBUG, `assertNumQueries`,
`connection.queries`) reads a psycopg cursor's statement from `_query` (Django itself does, in its PostgreSQL
backend's `last_executed_query`), and psycopg leaves `_query` unset when it runs a prepared statement; so this
cursor sets it, and a prepared hot statement is logged with its placeholders ($1…) like any other.
kernel/tests/test_adapters_psycopg.py pins both.
"""

import re
from functools import lru_cache

import psycopg
from psycopg.types.array import ListBinaryDumper

_PERCENT = re.compile(r"%(.|$)", re.DOTALL)


@lru_cache(maxsize=1024)
def numbered(query: str) -> str:
    """`query` with its `%s` placeholders as PostgreSQL's `$1`, `$2`… and `%%` as `%` (what psycopg's own
    conversion does for a statement with parameters; each parameter's format is the cursor's choice:
    ServerBindingCursor). Any other `%` sequence is refused, as psycopg refuses it."""
    count = 0

    def replace(found: re.Match) -> str:
        nonlocal count
        if found[1] == "s":
            count += 1
            return f"${count}"
        if found[1] == "%":
            return "%"
        raise psycopg.ProgrammingError(f"only '%s' placeholders are allowed in a hot statement, got '%{found[1]}'")

    return _PERCENT.sub(replace, query)


class ServerBindingCursor(psycopg.RawCursor):
    """A psycopg cursor with server-side binding (so psycopg prepares its statements) for statements written with
    `%s` placeholders, numbered once per text (`numbered`), logged by Django.

    Its lists (the batch statements' arrays) are sent in binary: psycopg dumps an array ~8x faster so than as
    text, where it quotes and escapes every element. A raw cursor chooses each parameter's format
    itself (PyFormat.AUTO), so the binary list dumper is made this cursor's choice for lists (its own adapters:
    no other cursor of the connection is affected)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.adapters.register_dumper(list, ListBinaryDumper)

    def execute(self, query, params=None, *, prepare=None, binary=None):
        if params is not None:
            query = numbered(query)
        return super().execute(query, params, prepare=prepare, binary=binary)

    def executemany(self, query, params_seq, *, returning=False):
        return super().executemany(numbered(query), params_seq, returning=returning)

    def _convert_query(self, query, params=None):
        converted = super()._convert_query(query, params)
        self._query = converted
        return converted
