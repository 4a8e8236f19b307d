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


def open_reservations_of(job_pk: int) -> list[tuple[int, int, int, int]]:
    """(reservation, period, tokens, cost_micros) of one job's open reservations, in quota order, locked."""
    reservation, period = QuotaReservation._meta.db_table, QuotaPeriod._meta.db_table
    with prepared_cursor() as cursor:
        cursor.execute(
            f"SELECT r.id, r.period_id, r.tokens, r.cost_micros FROM {reservation} r "
            f"JOIN {period} p ON p.id = r.period_id WHERE r.job_id = %s AND r.state = %s "
            f"ORDER BY p.quota_id, r.id{_lock()}",
            [job_pk, ReservationState.RESERVED],
        )
        return cursor.fetchall()


def open_reservations_of_many(job_pks: list[int]) -> list[tuple[Any, ...]]:
    """(reservation, job, period, tokens, cost_micros) of many jobs' open reservations, in quota order, locked
    (chunks of 2000 jobs)."""
    reservation, period = QuotaReservation._meta.db_table, QuotaPeriod._meta.db_table
    found = []
    for start in range(0, len(job_pks), 2000):
        chunk = job_pks[start : start + 2000]
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT r.id, r.job_id, r.period_id, r.tokens, r.cost_micros FROM {reservation} r "
                f"JOIN {period} p ON p.id = r.period_id WHERE r.job_id IN ({', '.join(['%s'] * len(chunk))}) "
                f"AND r.state = %s ORDER BY p.quota_id, r.id{_lock()}",
                [*chunk, ReservationState.RESERVED],
            )
            found += cursor.fetchall()
    return found
