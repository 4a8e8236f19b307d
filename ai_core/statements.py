"""ai_core's hand-written statements that read or write other models than the job's own through the hooks:
the creation statement (the job, its events, its roll-up +1 and the extensions' rows, guarded), and the job as
an attempt or an end reads it (its columns, its brand's company and the extensions' claim-time probes).

Every column list comes from the models' fields (business.sql), every extension table from the model the
extension named in its hook (hooks.RowExists, hooks.rows_at_creation): no statement text comes from another app.
"""

from typing import Any

from django.db import connection
from django.db.models import Model

from ai_core.hooks import RowExists, hooks
from ai_core.models import AIJob, AIJobEvent, JobDailyStat
from business.models import Brand
from business.sql import Columns, Insert, InsertSelect, prepared_cursor

# --- conditions on an extension's rows (hooks.RowExists) ---------------------------------------------------


def _literal(value: Any) -> str:
    """A constant of a probe as SQL (probes are parts of the claim's RETURNING list, which takes no parameter)."""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"a probe compares with a bool, int or str, not {type(value).__name__}")


def exists_sql(condition: RowExists, outer: str, *, literal: bool = False) -> tuple[str, list[Any]]:
    """`EXISTS (SELECT 1 FROM <model> WHERE <key> = <outer> AND <field> = <constant>…)` and its parameters (none
    when `literal`: the constants inlined)."""
    meta = condition.model._meta
    where, params = [f'x."{meta.get_field(condition.key).column}" = {outer}'], []
    for name, value in condition.where:
        column = meta.get_field(name).column
        if literal:
            where.append(f'x."{column}" = {_literal(value)}')
        else:
            where.append(f'x."{column}" = %s')
            params.append(value)
    return f"EXISTS (SELECT 1 FROM {meta.db_table} x WHERE {' AND '.join(where)})", params


# --- the job as an attempt or an end reads it -------------------------------------------------------------


class JobRead:
    """The job's columns under `alias`, then its brand's company, then one boolean per registered probe
    (hooks.probes: whether the extension holds state for the job), built again when the probes or the job's
    fields change."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.columns = Columns(AIJob, alias)
        self._for: tuple | None = None
        self._sql = ""

    @property
    def sql(self) -> str:
        key = (AIJob._meta.concrete_fields, tuple(hooks.probes.items()))
        if key != self._for:
            self.columns = Columns(AIJob, self.alias)
            probes = [exists_sql(p, f"{self.alias}.id", literal=True)[0] for p in hooks.probes.values()]
            brand = Brand._meta.db_table
            self._sql = ", ".join(
                [
                    self.columns.sql,
                    f"(SELECT b.company_id FROM {brand} b WHERE b.id = {self.alias}.brand_id)",
                    *probes,
                ]
            )
            self._names = list(hooks.probes)
            self._for = key
        return self._sql

    def job(self, row: tuple) -> AIJob:
        """The job out of a row read through `sql`: `job.company_id`, and each probe's answer as the job's
        attribute of the probe's name (and in `job.probed`)."""
        job = self.columns.instance(row)
        job.company_id, *probed = row[len(self.columns) :]
        job.probed = dict(zip(self._names, probed, strict=True))
        job.__dict__.update(job.probed)
        return job


def job_row(read: JobRead, job_pk: int) -> tuple | None:
    """The row of one job as `read` reads it (one prepared statement), or None."""
    with prepared_cursor() as cursor:
        cursor.execute(
            f"SELECT {read.sql} FROM {AIJob._meta.db_table} {read.alias} WHERE {read.alias}.id = %s", [job_pk]
        )
        return cursor.fetchone()


def jobs_beat(beats: list[tuple[int, int, int | None]], now: Any) -> int:
    """Stamp heartbeat_at (and the progress when given) on jobs still running on these attempts, in one
    statement both PostgreSQL and SQLite read (a row source of SELECT … UNION ALL SELECT …). Returns the count."""
    job = AIJob._meta.db_table
    now = connection.ops.adapt_datetimefield_value(now)
    values = " UNION ALL ".join(["SELECT %s AS pk, %s AS attempt, CAST(%s AS integer) AS progress"] * len(beats))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {job} SET heartbeat_at = %s, "
            f"progress_percentage = COALESCE(beat.progress, {job}.progress_percentage), "
            f"updated_at = CASE WHEN beat.progress IS NULL OR beat.progress = {job}.progress_percentage "
            f"THEN {job}.updated_at ELSE %s END "
            f"FROM ({values}) AS beat "
            f"WHERE {job}.id = beat.pk AND {job}.attempts = beat.attempt AND {job}.status = 'running'",
            [now, now, *[value for beat in beats for value in beat]],
        )
        return cursor.rowcount


# --- the one-statement creation ----------------------------------------------------------------------------

JOB_INSERT = Insert(AIJob)

# The creation's events (from the VALUES list `e`) and its roll-up +1, beside the inserted `job`
# (business.sql.InsertSelect fills the columns not named here with their field's default).
CREATION_EVENTS = InsertSelect(
    AIJobEvent,
    {
        "job_id": "job.id",
        "from_status": "e.from_status",
        "to_status": "e.to_status",
        "at": "%s::timestamptz",
        "attempt": "e.attempt",
        "reason": "e.reason",
        "actor_id": "e.actor_id",
    },
)
CREATION_ROLLUP = InsertSelect(
    JobDailyStat,
    {
        "brand_id": "%s::bigint",
        "day": "%s::date",
        "job_type_id": "%s::bigint",
        "status": "%s::text",
        "jobs": "1",
        "cost_micros": "0",
    },
)
_ROW_INSERTS: dict[type[Model], Insert] = {}


def job_link(model: type[Model]):
    """The field of an extension's model that links its row to the job (its foreign key to AIJob)."""
    return next(f for f in model._meta.concrete_fields if f.is_relation and f.related_model is AIJob)


def _row_insert(model: type[Model]) -> Insert:
    found = _ROW_INSERTS.get(model)
    if found is None:
        found = _ROW_INSERTS[model] = Insert(model, exclude=(job_link(model).name,))
    return found


def creation_statement(*, guards: list[RowExists], events: int, rows: list[Model]) -> tuple[str, int]:
    """PostgreSQL's one-statement creation and the number of its guards' placeholders. Its placeholders take, in
    order: JOB_INSERT's values, the guards' (company id, constants), the events' instant and defaults then their
    rows (from, to, attempt, reason, actor), the roll-up's, then each extension row's (creation_params)."""
    unless, guard_params = "", 0
    if guards:
        parts = [exists_sql(g, "%s") for g in guards]
        unless = f"WHERE NOT ({' OR '.join(sql for sql, _ in parts)}) "
        guard_params = sum(1 + len(params) for _, params in parts)
    values = ", ".join(["(%s::text, %s::text, %s::integer, %s::text, %s::bigint)"] * events)
    extra, returned = "", ""
    for i, row in enumerate(rows):
        model = type(row)
        insert = _row_insert(model)
        extra += (
            f', row{i} AS (INSERT INTO {model._meta.db_table} ("{job_link(model).column}", {insert.columns}) '
            f"SELECT id, {insert.typed_placeholders} FROM job RETURNING id)"
        )
        returned += f", (SELECT id FROM row{i})"
    sql = (
        f"WITH job AS (INSERT INTO {AIJob._meta.db_table} ({JOB_INSERT.columns}) "
        f"SELECT {JOB_INSERT.typed_placeholders} {unless}RETURNING id), "
        f"event AS ({CREATION_EVENTS} "
        f"FROM job CROSS JOIN (VALUES {values}) AS e (from_status, to_status, attempt, reason, actor_id)), "
        f"stat AS ({CREATION_ROLLUP} FROM job){extra} SELECT id{returned} FROM job"
    )
    return sql, guard_params


def creation_params(
    job: AIJob, *, guards: list[RowExists], company_id: int, events: list[tuple], day, rows: list[Model]
) -> list[Any]:
    params = [*JOB_INSERT.values(job)]
    for guard in guards:
        params += [company_id, *(value for _, value in guard.where)]
    params += [job.created_at, *CREATION_EVENTS.defaults()]
    params += [value for event in events for value in event]
    params += [job.brand_id, day, job.job_type_id, job.status, *CREATION_ROLLUP.defaults()]
    for row in rows:
        params += _row_insert(type(row)).values(row)
    return params


def saved(instance: Model, pk: int) -> None:
    """An instance inserted by a hand-written statement, as the ORM leaves one it saved."""
    instance.pk = pk
    instance._state.adding = False
    instance._state.db = connection.alias
