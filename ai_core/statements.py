"""ai_core's hand-written statements, in one place: the creation statement (the job, its events, its roll-up
+1 and the extensions' rows, guarded), the job as an attempt or an end reads it (its columns, its brand's
company and the extensions' claim-time probes), the compare-and-set's statement text (ai_core.workflow
assembles it and its parameters), the claim's probes (ai_core.engine.claim), the roll-up's fold and the
selectors' hand-written reads (the one-query job detail, the newest jobs per brand).

Every column list comes from the models' fields (business.sql), every extension table from the model the
extension named in its hook (hooks.RowExists, hooks.rows_at_creation): no statement text comes from another app.
"""

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cache, cached_property
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Model

from ai_core.hooks import InsertRow, RowExists, UpdateRows, hooks
from ai_core.models import AIJob, AIJobEvent, AIJobType, JobDailyStat, JobStatus
from business.models import Brand
from business.sql import Columns, Insert, InsertSelect, assignments_of, prepared_cursor

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


def _beat_set(job: str) -> dict[str, str]:
    """The beat's SET list by field: the instant, the progress when given, and updated_at when the progress
    changed (placeholders: the instant twice)."""
    progress = f"{job}.{AIJob._meta.get_field('progress_percentage').column}"
    return {
        "heartbeat_at": "%s",
        "progress_percentage": f"COALESCE(beat.progress, {progress})",
        "updated_at": (
            f"CASE WHEN beat.progress IS NULL OR beat.progress = {progress} "
            f"THEN {job}.{AIJob._meta.get_field('updated_at').column} ELSE %s END"
        ),
    }


# The fields a beat writes. No index of the jobs table may hold one of them (as a column, in an expression or
# a predicate): then every beat is a heap-only (HOT) update, one new row version on the row's own page and no
# index entry, where an indexed one rewrites all the table's indexes (ai_core/tests/engine/test_hot_beats.py).
BEAT_FIELDS = tuple(_beat_set(AIJob._meta.db_table))


def _beat_sql(rows: str, running: str, *, before: str = "") -> str:
    job = AIJob._meta.db_table
    assignments = ", ".join(f"{AIJob._meta.get_field(name).column} = {value}" for name, value in _beat_set(job).items())
    return (
        f"{before}UPDATE {job} SET {assignments} "
        f"FROM {rows} "
        f"WHERE {job}.id = beat.pk AND {job}.attempts = beat.attempt AND {running}"
    )


_RUNNING_PG = f"({AIJob._meta.db_table}.status = '{JobStatus.RUNNING.value}') IS TRUE"
# PostgreSQL: the beats as three arrays (one statement text whatever their number: psycopg converts it once,
# PostgreSQL plans it once per connection). `held` locks the rows first, in id order, skipping those locked
# (a batched completion ending them, engine.batch): an UPDATE's own row order is its plan's (a table scan's
# is the heap's), and a beat waiting on a completion that waits on it is a deadlock; a beat skipped is
# made again next round, well before the reaper (AICORE_REAP_AFTER_MS >= 3 heartbeats). `held` finds the
# rows by id (`id = ANY`, the primary key's index) and the UPDATE by the locked row's ctid, whatever the
# statistics say (with statistics older than the running jobs the planner otherwise joined every running
# row, or a whole index, to each beat); `(status = 'running') IS TRUE` is the same test as a filter no index
# serves (claim_batch_sql says why). A row updated after the statement's snapshot and before its lock is
# not visible to the UPDATE: that beat waits for the next round. Placeholders: the ids, the instant twice,
# the beats' ids, attempts and progress.
BEATS_PG = _beat_sql(
    "held JOIN unnest(%s::bigint[], %s::integer[], %s::integer[]) AS beat (pk, attempt, progress) ON beat.pk = held.id",
    f"{_RUNNING_PG} AND {AIJob._meta.db_table}.ctid = held.ctid",
    before=(
        f"WITH held AS (SELECT id, ctid FROM {AIJob._meta.db_table} WHERE id = ANY(%s::bigint[]) "
        f"AND (status = '{JobStatus.RUNNING.value}') IS TRUE ORDER BY id FOR NO KEY UPDATE SKIP LOCKED) "
    ),
)


def jobs_beat(beats: list[tuple[int, int, int | None]], now: Any) -> int:
    """Stamp heartbeat_at (and the progress when given) on jobs still running on these attempts, in one
    statement: on PostgreSQL BEATS_PG (the beats as arrays), elsewhere a row source of SELECT … UNION ALL
    SELECT …. Returns the count."""
    if not beats:
        return 0
    now = connection.ops.adapt_datetimefield_value(now)
    if connection.vendor == "postgresql":
        with prepared_cursor() as cursor:
            pks, attempts, progress = (list(column) for column in zip(*beats, strict=True))
            cursor.execute(BEATS_PG, [pks, now, now, pks, attempts, progress])
            return cursor.rowcount
    values = " UNION ALL ".join(["SELECT %s AS pk, %s AS attempt, CAST(%s AS integer) AS progress"] * len(beats))
    running = f"{AIJob._meta.db_table}.status = '{JobStatus.RUNNING.value}'"
    with connection.cursor() as cursor:
        cursor.execute(
            _beat_sql(f"({values}) AS beat", running), [now, now, *[value for beat in beats for value in beat]]
        )
        return cursor.rowcount


# PostgreSQL: the status and attempt of the jobs of an array of ids (one statement text whatever their number).
JOBS_STATES_PG = f"SELECT id, status, attempts FROM {AIJob._meta.db_table} WHERE id = ANY(%s::bigint[])"


def jobs_states(pks: list[int]) -> list[tuple[int, str, int]]:
    """(id, status, attempts) of those of these jobs that exist, in one statement (the watcher's poll)."""
    if connection.vendor == "postgresql":
        with prepared_cursor() as cursor:
            cursor.execute(JOBS_STATES_PG, [pks])
            return cursor.fetchall()
    return list(AIJob.objects.filter(pk__in=pks).values_list("pk", "status", "attempts"))


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


# --- the compare-and-set (ai_core.workflow assembles the statement and its parameters) ----------------------


def job_assignments(updates: dict[str, Any]) -> tuple[list[str], list[Any]]:
    """`"<column>" = %s` per field of the job to set, and their values as the database stores them (the SET
    list built once per set of fields: business.sql.assignments_of)."""
    shape = assignments_of(AIJob, tuple(updates))
    return list(shape.parts), shape.values(updates.values())


def _brands_at_limit() -> str:
    """The brands whose running jobs have reached their max_running_jobs, as a subquery of their ids: both claims
    (the compare-and-set's pick, engine.claim's) skip their jobs. It depends on nothing of the row it filters,
    so the database runs it once per claim (a hashed subplan), over the limited brands only."""
    brand, limit = Brand._meta.db_table, Brand._meta.get_field("max_running_jobs").column
    job, job_brand = AIJob._meta.db_table, AIJob._meta.get_field("brand").column
    return (
        f"SELECT b.id FROM {brand} b WHERE b.{limit} IS NOT NULL AND b.{limit} <= "
        f"(SELECT count(*) FROM {job} r WHERE r.{job_brand} = b.id AND r.status = '{JobStatus.RUNNING.value}')"
    )


BRANDS_AT_LIMIT = _brands_at_limit()
# A single job's transition picks it by id, locked.
PICK_BY_ID = f"SELECT id, status, attempts FROM {AIJob._meta.db_table} WHERE id = %s FOR UPDATE"


def claim_pick(levels: int) -> str:
    """claim_pending()'s pick: a nested loop over `levels` (priority, after brand) values, in their order, that
    stops at the first level yielding a row: one index range scan (aijob_pending_claim: priority, brand,
    created_at, id) per level looked at. Its last placeholder is the instant the jobs must be available at."""
    table = AIJob._meta.db_table
    return (
        f"SELECT c.id, c.status, c.attempts FROM (VALUES {', '.join(['(%s, %s::bigint)'] * levels)}) "
        f"AS level (priority, after_brand) CROSS JOIN LATERAL ("
        f"SELECT id, status, attempts FROM {table} WHERE status = 'pending' AND priority = level.priority "
        f"AND available_at <= %s AND brand_id > level.after_brand AND brand_id NOT IN ({BRANDS_AT_LIMIT}) "
        f"ORDER BY brand_id, created_at, id "
        f"LIMIT 1 FOR UPDATE SKIP LOCKED) AS c LIMIT 1"
    )


# The rows a transition statement writes beside the job: its event and its two roll-up deltas, read from
# `moved` (the job as the compare-and-set left it, with `from_status`). business.sql.InsertSelect fills
# the columns not named here with their field's default.
TRANSITION_EVENT = InsertSelect(
    AIJobEvent,
    {
        "job_id": "id",
        "from_status": "from_status",
        "to_status": "%s::text",
        "at": "%s::timestamptz",
        "attempt": "attempts",
        "reason": "%s::text",
        "actor_id": "%s::bigint",
    },
)
TRANSITION_ROLLUP = InsertSelect(
    JobDailyStat,
    {
        "brand_id": "moved.brand_id",
        "day": "(moved.created_at AT TIME ZONE %s::text)::date",
        "job_type_id": "moved.job_type_id",
        "status": "d.status",
        "jobs": "d.jobs",
        "cost_micros": "d.cost",
    },
)


def transition_sql(
    *, pick: str, assignments: list[str], claim: bool, fenced: bool, along: Sequence[str], also_return: str
) -> str:
    """PostgreSQL: the whole transition in one statement of data-modifying CTEs.

    `cur` locks the picked row (FOR UPDATE waits for a concurrent writer, then sees its committed version),
    `moved` is the compare-and-set (status still the one read, allowed, attempt fence), `event` and `rollup`
    only see a row when `moved` does; each `along` part reads `moved` too. Placeholders, in order: the pick's,
    the assignments', the allowed statuses, the attempt (when `fenced`), TRANSITION_EVENT's (to, at, reason,
    actor, its defaults), TRANSITION_ROLLUP's (time zone, its defaults), the new status and its cost, the
    along parts'. `claim`: the attempt counter moves on.
    """
    job = AIJob._meta
    if claim:
        assignments = [*assignments, "attempts = job.attempts + 1"]
    fence = "AND cur.attempts = %s" if fenced else ""
    return f"""
        WITH cur AS ({pick}),
        moved AS (
            UPDATE {job.db_table} AS job SET {", ".join(assignments)} FROM cur
            WHERE job.id = cur.id AND job.status = cur.status AND cur.status = ANY(%s::text[]) {fence}
            RETURNING cur.status AS from_status, job.*
        ),
        event AS ({TRANSITION_EVENT} FROM moved),
        rollup AS (
            {TRANSITION_ROLLUP}
            FROM moved CROSS JOIN LATERAL (VALUES (moved.from_status::text, -1, 0::bigint), (%s::text, 1, %s::bigint))
                AS d (status, jobs, cost)
        ){"".join(f", along{i} AS ({part})" for i, part in enumerate(along))}
        SELECT cur.id, cur.status, cur.attempts, moved.attempts, moved.brand_id{also_return and ", "}{also_return}
        FROM cur LEFT JOIN moved ON true
    """


# The roll-up deltas of a batch of claims: one row per (brand, day, type, status) moved, summed (GROUP BY the
# first four columns, InsertSelect's order: a batch of 64 claims writes a few rows, not 128).
CLAIM_BATCH_ROLLUP = InsertSelect(
    JobDailyStat,
    {
        "brand_id": "moved.brand_id",
        "day": "(moved.created_at AT TIME ZONE %s::text)::date",
        "job_type_id": "moved.job_type_id",
        "status": "d.status",
        "jobs": "sum(d.jobs)",
        "cost_micros": "0",
    },
)


def claim_batch_sql(*, levels: int, assignments: list[str], also_return: str) -> str:
    """PostgreSQL: up to N claims in one statement, in the order N successive claims (claim_pick's) would make
    them, each the claim's compare-and-set (pending -> running, attempts + 1) with its event and roll-up.

    `level` holds, per priority in order, the rotation's position (engine.claim.BrandRotation): the brands
    after `after_brand` come first, then from the first (a lap); `turn_brand` had `in_a_row` claims of its
    turn already. `walk` finds each level's brands with claimable work (a loose scan of aijob_pending_claim:
    one index probe per brand), `turn` their weight and their room under max_running_jobs (NULL: no limit,
    the running jobs counted only for limited brands), `cand` each brand's oldest N jobs at the level (one
    index range scan each), numbered: its `nth` job falls in round (nth + in_a_row) / weight. `pick` orders
    them by level, round, lap, brand, nth (a brand's `weight` jobs in a row per round, brands in rotation
    order) and keeps a brand's first `room` across the levels; `cur` locks them (SKIP LOCKED, the status
    checked again on the row's newest version); `moved`, `event`, `rollup` are the compare-and-set's. Returns
    the moved rows in claim order, each: the number of jobs picked, id, attempts, brand id, then `also_return`
    (read from `moved`); with none moved, one row of the number picked and NULLs. Picked but not moved: taken
    or locked by a concurrent claim meanwhile (the caller claims again).

    `cur` and `moved` find each row by its id, whatever the statistics say: their status checks are written
    `(…) IS TRUE` (the same test on a NOT NULL column), which no index can serve, so the planner cannot take
    the status indexes for them. Otherwise, with statistics older than a backlog (a table just filled, or one
    of finished jobs whose pending rows the statistics put at ~0), it scanned every pending (or every same-
    status) row once per claim: a batch of 100 claims over 2 000 pending jobs took ~5x longer in PostgreSQL.

    Placeholders: per level (rank, priority, after brand, turn brand, in a row); the instant, N; the
    assignments'; the allowed statuses; TRANSITION_EVENT's (to, at, reason, actor, its defaults);
    CLAIM_BATCH_ROLLUP's (time zone, its defaults); the new status.
    """
    job, brand = AIJob._meta.db_table, Brand._meta.db_table
    weight = Brand._meta.get_field("capacity_weight").column
    limit = Brand._meta.get_field("max_running_jobs").column
    claimable = f"status = '{JobStatus.PENDING.value}' AND available_at <= (SELECT at FROM ask)"
    values = ", ".join(["(%s::int, %s::text, %s::bigint, %s::bigint, %s::int)"] * levels)
    return f"""
        WITH RECURSIVE level (rank, priority, after_brand, turn_brand, in_a_row) AS (VALUES {values}),
        ask (at, n) AS (VALUES (%s::timestamptz, %s::int)),
        walk (rank, brand_id) AS (
            SELECT level.rank, (SELECT min(brand_id) FROM {job} WHERE {claimable} AND priority = level.priority)
            FROM level
            UNION ALL
            SELECT walk.rank, (
                SELECT min(brand_id) FROM {job} WHERE {claimable} AND brand_id > walk.brand_id
                AND priority = (SELECT level.priority FROM level WHERE level.rank = walk.rank)
            ) FROM walk WHERE walk.brand_id IS NOT NULL
        ),
        turn AS (
            SELECT level.rank, level.priority, walk.brand_id, b.{weight} AS weight,
                CASE WHEN b.{limit} IS NULL THEN NULL ELSE b.{limit} - (
                    SELECT count(*) FROM {job} r WHERE r.brand_id = b.id AND r.status = '{JobStatus.RUNNING.value}'
                ) END AS room,
                CASE WHEN walk.brand_id = level.turn_brand THEN least(level.in_a_row, b.{weight} - 1) ELSE 0 END
                    AS done,
                walk.brand_id <= level.after_brand AS lap
            FROM walk JOIN level ON level.rank = walk.rank JOIN {brand} b ON b.id = walk.brand_id
        ),
        cand AS (
            SELECT c.id, turn.rank, turn.brand_id, turn.lap, turn.room, c.nth,
                (c.nth + turn.done) / turn.weight AS round,
                row_number() OVER (PARTITION BY turn.brand_id ORDER BY turn.rank, c.nth) AS of_brand
            FROM turn CROSS JOIN LATERAL (
                SELECT s.id, row_number() OVER (ORDER BY s.created_at, s.id) - 1 AS nth FROM (
                    SELECT id, created_at FROM {job} WHERE {claimable} AND priority = turn.priority
                    AND brand_id = turn.brand_id ORDER BY created_at, id LIMIT (SELECT n FROM ask)
                ) s
            ) c
            WHERE turn.room IS NULL OR turn.room > 0
        ),
        pick AS MATERIALIZED (
            SELECT id, row_number() OVER (ORDER BY rank, round, lap, brand_id, nth) AS pos FROM cand
            WHERE room IS NULL OR of_brand <= room
            ORDER BY rank, round, lap, brand_id, nth LIMIT (SELECT n FROM ask)
        ),
        cur AS (
            SELECT j.id, j.status, pick.pos FROM {job} j JOIN pick ON pick.id = j.id
            WHERE (j.status = '{JobStatus.PENDING.value}') IS TRUE FOR UPDATE OF j SKIP LOCKED
        ),
        moved AS (
            UPDATE {job} AS job SET {", ".join([*assignments, "attempts = job.attempts + 1"])} FROM cur
            WHERE job.id = cur.id AND (job.status = cur.status) IS TRUE AND cur.status = ANY(%s::text[])
            RETURNING cur.status AS from_status, cur.pos AS claim_pos, job.*
        ),
        event AS ({TRANSITION_EVENT} FROM moved),
        rollup AS (
            {CLAIM_BATCH_ROLLUP}
            FROM moved CROSS JOIN LATERAL (VALUES (moved.from_status::text, -1), (%s::text, 1)) AS d (status, jobs)
            GROUP BY 1, 2, 3, 4
        )
        SELECT (SELECT count(*) FROM pick), moved.id, moved.attempts, moved.brand_id{also_return and ", "}{also_return}
        FROM (VALUES (1)) AS always (one) LEFT JOIN moved ON true ORDER BY moved.claim_pos
    """


_INSERTS: dict[type[Model], Insert] = {}


def _insert_of(model: type[Model]) -> Insert:
    found = _INSERTS.get(model)
    if found is None:
        found = _INSERTS[model] = Insert(model)
    return found


def along_part(write: InsertRow | UpdateRows) -> tuple[str, list[Any]]:
    """One extension write as a part of the transition statement: it reads the moved row from `moved`, so it
    writes nothing when the compare-and-set moved nothing. Built from the model's fields (a field added with a
    default is written with it)."""
    if isinstance(write, InsertRow):
        model = type(write.row)
        insert = _insert_of(model)
        return (
            f"INSERT INTO {model._meta.db_table} ({insert.columns}) "
            f"SELECT {insert.typed_placeholders} FROM moved ON CONFLICT DO NOTHING",
            insert.values(write.row),
        )
    shape = assignments_of(write.model, tuple(write.values), typed=True)
    key = write.model._meta.get_field(write.key).column
    return (
        f'UPDATE {write.model._meta.db_table} SET {shape.sql} WHERE "{key}" = (SELECT id FROM moved)',
        shape.values(write.values.values()),
    )


# The roll-up rows of a multi-row transition: `moved`'s deltas summed per (brand, day, type, status) in `s`.
MANY_ROLLUP = InsertSelect(
    JobDailyStat,
    {
        "brand_id": "s.brand_id",
        "day": "s.day",
        "job_type_id": "s.job_type_id",
        "status": "s.status",
        "jobs": "s.jobs",
        "cost_micros": "s.cost",
    },
)


def job_field_types(names: Sequence[str]) -> list[tuple[str, str]]:
    """(column, database type) of the job's fields `names`: the per-job columns of transitions_sql."""
    meta, conn = AIJob._meta, connections[DEFAULT_DB_ALIAS]
    return [(meta.get_field(name).column, meta.get_field(name).db_type(conn)) for name in names]


def job_values(name: str, values: Sequence[Any]) -> list[Any]:
    """Values of the job's field `name` as the database stores them (one array parameter of transitions_sql)."""
    field, conn = AIJob._meta.get_field(name), connections[DEFAULT_DB_ALIAS]
    return [field.get_db_prep_save(value, conn) for value in values]


def transitions_sql(*, assignments: list[str], each: Sequence[tuple[str, str]], along: Sequence[str] = ()) -> str:
    """PostgreSQL: many jobs' transitions in ONE statement of data-modifying CTEs (workflow.transition_many).

    `v` is the jobs as arrays (id, attempt fence or NULL, cost in micro-dollars, then each per-job column of
    `each`: (column, type)), `cur` locks their rows in id order (the lock order of the job rows of a batch),
    `moved` is each job's compare-and-set (status still the one read and allowed, its own attempt fence), `event`
    one event per moved job, `rollup` the deltas summed per (brand, day, type, status). Placeholders, in order:
    the arrays (ids, attempts, costs, each column's), the common assignments', the allowed statuses,
    TRANSITION_EVENT's (to, at, reason, actor, its defaults), MANY_ROLLUP's defaults, the time zone, the new
    status, then the `along` parts' (along_many_parts: the extensions' writes, of the moved jobs only). Returns
    per job found: id, status and attempts read, attempts after the move (NULL: not moved), brand.

    `cur` reads the rows by `id = ANY(ARRAY(…))`: an index scan of the primary key whatever the statistics
    say (as `IN (SELECT …)`, with statistics older than the table's rows it was a scan of the whole table).
    """
    job = AIJob._meta.db_table
    columns = ", ".join(["id", "attempt", "cost", *(f"c{i}" for i in range(len(each)))])
    arrays = ", ".join(["%s::bigint[]", "%s::integer[]", "%s::bigint[]", *(f"%s::{kind}[]" for _, kind in each)])
    sets = ", ".join([*assignments, *(f'"{column}" = v.c{i}' for i, (column, _) in enumerate(each))])
    return f"""
        WITH v AS (SELECT * FROM unnest({arrays}) AS v ({columns})),
        cur AS (
            SELECT j.id, j.status, j.attempts FROM {job} j WHERE j.id = ANY(ARRAY(SELECT id FROM v)) ORDER BY j.id
                FOR UPDATE
        ),
        moved AS (
            UPDATE {job} AS job SET {sets} FROM cur JOIN v ON v.id = cur.id
            WHERE job.id = cur.id AND job.status = cur.status AND cur.status = ANY(%s::text[])
                AND (v.attempt IS NULL OR cur.attempts = v.attempt)
            RETURNING cur.status AS from_status, v.cost AS moved_cost, job.*
        ),
        event AS ({TRANSITION_EVENT} FROM moved),
        rollup AS (
            {MANY_ROLLUP} FROM (
                SELECT moved.brand_id, (moved.created_at AT TIME ZONE %s::text)::date AS day, moved.job_type_id,
                    d.status, sum(d.jobs)::bigint AS jobs, sum(d.cost)::bigint AS cost
                FROM moved CROSS JOIN LATERAL (
                    VALUES (moved.from_status::text, -1, 0::bigint), (%s::text, 1, moved.moved_cost)
                ) AS d (status, jobs, cost)
                GROUP BY 1, 2, 3, 4 HAVING sum(d.jobs) <> 0 OR sum(d.cost) <> 0
            ) AS s
        ){"".join(f", along{i} AS ({part})" for i, part in enumerate(along))}
        SELECT cur.id, cur.status, cur.attempts, moved.attempts, moved.brand_id
        FROM cur LEFT JOIN moved ON moved.id = cur.id ORDER BY cur.id
    """


def _arrays(fields: Sequence, rows: Sequence[Sequence[Any]]) -> tuple[str, list[Any]]:
    """`unnest(CAST(%s AS <type>[]), …) AS u (c0, …)`: rows as a table of one array parameter per column, each
    typed as the field it is written to (one statement text whatever the number of rows); and the arrays (sent
    in binary by the hot statements' cursor: kernel.adapters.psycopg.ServerBindingCursor)."""
    conn = connections[DEFAULT_DB_ALIAS]
    casts = ", ".join(f"CAST(%s AS {f.db_type(conn)}[])" for f in fields)
    names = ", ".join(f"c{i}" for i in range(len(fields)))
    return f"unnest({casts}) AS u ({names})", [list(column) for column in zip(*rows, strict=True)]


def along_many_parts(writes: Sequence[InsertRow | UpdateRows]) -> list[tuple[str, list[Any]]]:
    """The extensions' writes of many jobs' ends as parts of transitions_sql's statement, each reading `moved`
    so that only the jobs the compare-and-set moved are written: per model ONE insert of its rows (a
    conflicting row skipped), per (model, key, fields) ONE update. Built from the models' fields."""
    inserts: dict[type[Model], list[Model]] = {}
    updates: dict[tuple, list[UpdateRows]] = {}
    for write in writes:
        if isinstance(write, InsertRow):
            inserts.setdefault(type(write.row), []).append(write.row)
        else:
            updates.setdefault((write.model, write.key, tuple(write.values)), []).append(write)
    parts = []
    for model, rows in inserts.items():
        insert = _insert_of(model)
        link = next(i for i, f in enumerate(insert.fields) if f.is_relation and f.related_model is AIJob)
        source, arrays = _arrays(insert.fields, [insert.values(row) for row in rows])
        names = ", ".join(f"c{i}" for i in range(len(insert.fields)))
        parts.append(
            (
                f"INSERT INTO {model._meta.db_table} ({insert.columns}) SELECT {names} FROM {source} "
                f"WHERE c{link} IN (SELECT id FROM moved) ON CONFLICT DO NOTHING",
                arrays,
            )
        )
    conn = connections[DEFAULT_DB_ALIAS]
    for (model, key, names), group in updates.items():
        meta = model._meta
        fields = [meta.get_field(key), *(meta.get_field(name) for name in names)]
        rows = [[w.job_pk, *(f.get_db_prep_save(w.values[f.name], conn) for f in fields[1:])] for w in group]
        source, arrays = _arrays([AIJob._meta.pk, *fields[1:]], rows)
        assignments = ", ".join(f'"{f.column}" = u.c{i}' for i, f in enumerate(fields) if i)
        parts.append(
            (
                f'UPDATE {meta.db_table} SET {assignments} FROM {source} WHERE "{fields[0].column}" = u.c0 '
                "AND u.c0 IN (SELECT id FROM moved)",
                arrays,
            )
        )
    return parts


def jobs_move_sql(assignments: list[str], jobs: int) -> str:
    """SQLite: transition_many()'s compare-and-set of `jobs` jobs from one status (moves carrying nothing per
    job): placeholders, the assignments', the job ids, the status."""
    return (
        f"UPDATE {AIJob._meta.db_table} SET {', '.join(assignments)} "
        f"WHERE id IN ({', '.join(['%s'] * jobs)}) AND status = %s RETURNING id, attempts"
    )


# --- the roll-up's fold (workflow.stats_compact) -------------------------------------------------------------

ROLLUP_KEY = ", ".join(JobDailyStat._meta.get_field(name).column for name in ("brand", "day", "job_type", "status"))
# The folded row per key, from the deleted delta rows (`gone`).
FOLDED_ROLLUP = InsertSelect(
    JobDailyStat,
    {
        "brand_id": "brand_id",
        "day": "day",
        "job_type_id": "job_type_id",
        "status": "status",
        "jobs": "sum(jobs)",
        "cost_micros": "sum(cost_micros)",
    },
)


def _duplicated_keys(recent: bool) -> str:
    """The roll-up keys with several rows (placeholders: the id the recent rows are above, when `recent`; the
    number of keys)."""
    table, key = JobDailyStat._meta.db_table, ROLLUP_KEY
    since = f"WHERE ({key}) IN (SELECT {key} FROM {table} WHERE id > %s) " if recent else ""
    return f"SELECT {key} FROM {table} {since}GROUP BY {key} HAVING count(*) > 1 LIMIT %s"


def rollup_fold_sql(*, recent: bool) -> str:
    """PostgreSQL: delete the rows of duplicated keys and insert their sums, one statement (then
    FOLDED_ROLLUP's defaults as placeholders)."""
    table, key = JobDailyStat._meta.db_table, ROLLUP_KEY
    return (
        f"WITH gone AS (DELETE FROM {table} WHERE ({key}) IN ({_duplicated_keys(recent)}) "
        f"RETURNING {key}, jobs, cost_micros) "
        f"{FOLDED_ROLLUP} FROM gone GROUP BY {key}"
    )


def rollup_duplicates_sql(*, recent: bool) -> str:
    """SQLite: the sums of duplicated keys and their rows' ids (group_concat), for the fold to rewrite."""
    table, key = JobDailyStat._meta.db_table, ROLLUP_KEY
    return (
        f"SELECT {key}, sum(jobs), sum(cost_micros), group_concat(id) FROM {table} "
        f"WHERE ({key}) IN ({_duplicated_keys(recent)}) GROUP BY {key}"
    )


# --- the engine's claim (ai_core.engine.claim) ------------------------------------------------------------


def of_moved_brand(field: str) -> str:
    """The claimed job's brand's `field`, as a column the claim statement returns."""
    return f"(SELECT b.{Brand._meta.get_field(field).column} FROM {Brand._meta.db_table} b WHERE b.id = moved.brand_id)"


def running_before_sql(jobs: int) -> str:
    """Per given job (placeholders: `jobs` ids): its id and the count of its brand's running jobs that started
    before it (by started_at, then id)."""
    job = AIJob._meta.db_table
    return (
        f"SELECT j.id, (SELECT count(*) FROM {job} r WHERE r.brand_id = j.brand_id "
        f"AND r.status = '{JobStatus.RUNNING.value}' AND (r.started_at, r.id) < (j.started_at, j.id)) "
        f"FROM {job} j WHERE j.id IN ({', '.join(['%s'] * jobs)})"
    )


def levels_with_work_sql(levels: int) -> str:
    """One row per priority of `levels` that has a claimable job (of a brand below its max_running_jobs), in one
    round trip (an index probe per level). Placeholders per level: its name, its name, the instant."""
    probe = (
        f"SELECT CAST(%s AS text) WHERE EXISTS (SELECT 1 FROM {AIJob._meta.db_table} WHERE status = 'pending' "
        f"AND priority = %s AND available_at <= %s AND brand_id NOT IN ({BRANDS_AT_LIMIT}))"
    )
    return " UNION ALL ".join([probe] * levels)


# --- the selectors' hand-written reads (ai_core.selectors) ----------------------------------------------------

EVENT_FIELDS = ("id", "from_status", "to_status", "at", "attempt", "reason", "actor_id")


class JobDetailRead:
    """The job detail in one query: the job, its type, creator, one-to-one extensions and events.

    The API's hottest read. Its ORM form (select_related over five tables, plus a query for the events)
    cost ~2 ms of Python per request, most of it compiling SQL; written once, it costs ~0.2 ms. The brand
    condition is jobs_of()'s (`brand_condition(vendor)`: its SQL, one placeholder for the brand id, from
    ai_core.selectors); the request's brand is the job's brand (that condition holds), so it is not read again.
    """

    def __init__(self, brand_condition: Callable[[str], str]) -> None:
        self.brand_condition = brand_condition
        self.job = Columns(AIJob, f'"{AIJob._meta.db_table}"')
        self.job_type = Columns(AIJobType, "t", ["id", "name", "category", "default_model"])
        self.creator = Columns(AIJob._meta.get_field("created_by").related_model, "u", ["id", "username"])
        self.extensions = [
            (rel, Columns(rel.related_model, f"x{i}"))
            for i, rel in enumerate(r for r in AIJob._meta.related_objects if r.one_to_one)
        ]

    @cached_property
    def _from(self) -> str:
        job_table = AIJob._meta.db_table
        joins = [
            f'INNER JOIN "{AIJobType._meta.db_table}" t ON t."id" = "{job_table}"."job_type_id"',
            f'LEFT JOIN "{self.creator.model._meta.db_table}" u ON u."id" = "{job_table}"."created_by_id"',
        ]
        for rel, columns in self.extensions:
            joins.append(
                f'LEFT JOIN "{rel.related_model._meta.db_table}" {columns.alias} '
                f'ON {columns.alias}."{rel.field.column}" = "{job_table}"."id"'
            )
        return f'FROM "{job_table}" ' + " ".join(joins)

    def _events_sql(self, vendor: str) -> str:
        """The job's events as one JSON array, oldest first."""
        table, job_table = AIJobEvent._meta.db_table, AIJob._meta.db_table
        pairs = ", ".join(f"'{name}', e.\"{AIJobEvent._meta.get_field(name).column}\"" for name in EVENT_FIELDS)
        if vendor == "postgresql":
            return (
                f"(SELECT coalesce(json_agg(json_build_object({pairs}) ORDER BY e.\"id\"), '[]') "
                f'FROM "{table}" e WHERE e."job_id" = "{job_table}"."id")'
            )
        return (
            f"(SELECT json_group_array(json_object({pairs})) FROM "
            f'(SELECT * FROM "{table}" WHERE "job_id" = "{job_table}"."id" ORDER BY "id") e)'
        )

    @cache  # noqa: B019 - one instance per process and a handful of (field, vendor) keys: nothing leaks
    def sql(self, field: str, vendor: str) -> str:
        select = [self.job.sql, self.job_type.sql, self.creator.sql]
        select += [columns.sql for _, columns in self.extensions]
        select.append(self._events_sql(vendor))
        column = AIJob._meta.get_field(field).column
        return (
            f"SELECT {', '.join(select)} {self._from} "
            f'WHERE {self.brand_condition(vendor)} AND "{AIJob._meta.db_table}"."{column}" = %s'
        )

    def get(self, *, brand: Brand, field: str, value: str | int) -> AIJob | None:
        with prepared_cursor() as cursor:
            cursor.execute(self.sql(field, connection.vendor), [brand.id, value])
            row = cursor.fetchone()
        if row is None:
            return None
        job = self.job.instance(row)
        at = len(self.job)
        job.job_type = self.job_type.instance(row, at)
        at += len(self.job_type)
        job.brand = brand
        job.created_by = self.creator.instance(row, at) if self.creator.present(row, at) else None
        at += len(self.creator)
        for rel, columns in self.extensions:
            # No row: cached as None, which the accessor answers with RelatedObjectDoesNotExist, as after
            # select_related.
            rel.set_cached_value(job, columns.instance(row, at) if columns.present(row, at) else None)
            at += len(columns)
        job.event_rows = [_event_row(e) for e in _json(row[at])]
        return job


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def _event_row(event: dict) -> dict:
    """An event out of the JSON array: its timestamp back to an aware datetime (SQLite's has no offset)."""
    at = datetime.fromisoformat(event["at"])
    event["at"] = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return event


def explained(sql: str) -> str:
    """PostgreSQL's plan of a query, as JSON (its row estimate)."""
    return "EXPLAIN (FORMAT JSON) " + sql


# The newest jobs across brands: each brand's newest `limit` ids from its (brand, created_at) index (a LATERAL
# join), then the overall newest. Placeholders: the brand ids (an array), the limit, the limit.
NEWEST_PER_BRAND = (
    f"SELECT j.id FROM unnest(%s::bigint[]) AS b(id) CROSS JOIN LATERAL ("
    f"SELECT id, created_at FROM {AIJob._meta.db_table} WHERE brand_id = b.id ORDER BY created_at DESC, id DESC "
    f"LIMIT %s) AS j ORDER BY j.created_at DESC, j.id DESC LIMIT %s"
)
