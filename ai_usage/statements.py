"""ai_usage's hand-written statements, in one place: each built from its models' fields (business.sql), so a
field added with a default needs no change here (ai_core/tests/test_statement_columns.py).

The usage row of a job's end is not here: it is data (hooks.InsertRow) written by the lifecycle's own statement.
"""

from typing import Any

from django.db import connection

from ai_usage.models import Quota, QuotaPeriod, QuotaReservation, QuotaThresholdCrossing, ReservationState
from business.sql import Insert, prepared_cursor

CROSSING_INSERT = Insert(QuotaThresholdCrossing)


def crossing_insert_once(crossing: QuotaThresholdCrossing) -> bool:
    """Insert a budget alert unless its (period, threshold, basis) was already recorded; whether it was new."""
    with prepared_cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {QuotaThresholdCrossing._meta.db_table} ({CROSSING_INSERT.columns}) "
            f"VALUES ({CROSSING_INSERT.placeholders}) ON CONFLICT DO NOTHING",
            CROSSING_INSERT.values(crossing),
        )
        return cursor.rowcount == 1


def active_quota_exists(company_id: int) -> bool:
    """Whether the company has an active quota: one indexed probe (the ORM's compiling cost several times it)."""
    with prepared_cursor() as cursor:
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM {Quota._meta.db_table} WHERE company_id = %s AND is_active)",  # noqa: S608
            [company_id],
        )
        return bool(cursor.fetchone()[0])


def _lock() -> str:
    return " FOR UPDATE OF r" if connection.features.has_select_for_update_of else ""


def open_reservations_of_many(job_pks: list[int]) -> list[tuple[Any, ...]]:
    """(reservation, job, period, tokens, cost_micros) of the jobs' open reservations, locked in the global
    order of reservation rows (period, then id: services.quota_lock_open). PostgreSQL: one statement whatever
    the number of jobs (an array), so the order holds across all of them; SQLite (no row locks): chunks."""
    reservation = QuotaReservation._meta.db_table
    columns = f"SELECT r.id, r.job_id, r.period_id, r.tokens, r.cost_micros FROM {reservation} r "
    order = f"AND r.state = %s ORDER BY r.period_id, r.id{_lock()}"
    if connection.vendor == "postgresql":
        with prepared_cursor() as cursor:
            cursor.execute(f"{columns}WHERE r.job_id = ANY(%s::bigint[]) {order}", [job_pks, ReservationState.RESERVED])
            return cursor.fetchall()
    found = []
    for start in range(0, len(job_pks), 2000):
        chunk = job_pks[start : start + 2000]
        with connection.cursor() as cursor:
            cursor.execute(f"{columns}WHERE r.job_id IN ({', '.join(['%s'] * len(chunk))}) {order}",
                           [*chunk, ReservationState.RESERVED])  # fmt: skip
            found += cursor.fetchall()
    return sorted(found, key=lambda row: (row[2], row[0]))


def periods_lock(period_pks: list[int]) -> None:
    """Lock these quota periods in id order (the global order of quota period rows), in one statement."""
    if not period_pks or not connection.features.has_select_for_update:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {QuotaPeriod._meta.db_table} WHERE id IN ({', '.join(['%s'] * len(period_pks))}) "
            "ORDER BY id FOR UPDATE",
            sorted(period_pks),
        )


def _rows_source(fields: list, rows: list[tuple]) -> tuple[str, list[Any]]:
    """`(SELECT CAST(%s AS <type>) AS c0, … UNION ALL …)`: rows as a table both PostgreSQL and SQLite read,
    each column typed as the model field it is compared with or written to; and the flattened values."""
    one = ", ".join(f"CAST(%s AS {f.db_type(connection)}) AS c{i}" for i, f in enumerate(fields))
    return "(" + " UNION ALL ".join([f"SELECT {one}"] * len(rows)) + ")", [v for row in rows for v in row]


def reservations_close(rows: list[tuple[int, str, int, int]], closed_at: Any) -> list[int]:
    """Close open reservations: (reservation, new state, settled tokens, settled micros) each, by one
    compare-and-set on `state = reserved` per chunk of rows; the ids this call closed (another writer's are
    left as they are)."""
    meta = QuotaReservation._meta
    fields = [meta.get_field(name) for name in ("id", "state", "settled_tokens", "settled_cost_micros")]
    closed_at = meta.get_field("closed_at").get_db_prep_save(closed_at, connection)
    won = []
    for start in range(0, len(rows), 500):
        source, params = _rows_source(fields, rows[start : start + 500])
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {meta.db_table} SET state = v.c1, settled_tokens = v.c2, settled_cost_micros = v.c3, "
                f"closed_at = %s FROM {source} AS v WHERE {meta.db_table}.id = v.c0 "
                f"AND {meta.db_table}.state = %s RETURNING {meta.db_table}.id",
                [closed_at, *params, ReservationState.RESERVED],
            )
            won += [pk for (pk,) in cursor.fetchall()]
    return won


def periods_move(moves: list[tuple[int, int, int, int, int]]) -> None:
    """Move quota periods' counters, each once, in one statement: (period, reserved tokens back, reserved
    micros back, used tokens added, used micros added). The caller holds their locks (periods_lock)."""
    if not moves:
        return
    meta = QuotaPeriod._meta
    names = ("id", "reserved_tokens", "reserved_cost_micros", "used_tokens", "used_cost_micros")
    source, params = _rows_source([meta.get_field(name) for name in names], sorted(moves))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {meta.db_table} SET reserved_tokens = reserved_tokens - v.c1, "
            f"reserved_cost_micros = reserved_cost_micros - v.c2, used_tokens = used_tokens + v.c3, "
            f"used_cost_micros = used_cost_micros + v.c4 FROM {source} AS v WHERE {meta.db_table}.id = v.c0",
            params,
        )
