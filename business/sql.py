"""Hand-written statements for the few queries every API request runs.

Compiling an ORM query costs more than running it: the job detail's joins took ~0.7 ms of Python to turn
into SQL, and PostgreSQL ~0.3 ms to plan it, for ~0.06 ms of execution. These statements are written once as
SQL instead; `Columns` keeps them tied to the models (the column list comes from the model's fields) and turns
each row back into a model instance through the same converters the ORM applies, so values read the same
either way. `prepared_cursor` runs them as prepared statements, planned once per database connection.
"""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cached_property
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db import models as m
from django.db.models import Model


@contextmanager
def prepared_cursor() -> Iterator[Any]:
    """A cursor for the hand-written hot statements.

    On PostgreSQL its parameters are bound server-side, so psycopg prepares each statement on the connection
    (DB_PREPARE_HOT_STATEMENTS, on by default) and PostgreSQL plans it once per pooled connection rather than
    on every request. Django's own queries keep client-side binding: only these few, written for it (typed
    parameters, see their casts), are prepared. Elsewhere a plain cursor.
    """
    if connection.vendor != "postgresql" or not settings.DB_PREPARE_HOT_STATEMENTS:
        with connection.cursor() as cursor:
            yield cursor
        return
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        raw = _preparing_cursor_class()(connection.connection)
    # What Django does to its own cursors: its query log when queries are logged (debug, assertNumQueries).
    cursor = connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)
    with cursor:
        yield cursor


def _preparing_cursor_class():
    from kernel.adapters.psycopg import ServerBindingCursor  # psycopg: PostgreSQL only

    return ServerBindingCursor


class Columns:
    """The concrete columns of a model under a table alias: a SELECT list, and instances from its values."""

    def __init__(self, model: type[Model], alias: str, fields: list[str] | None = None) -> None:
        self.model = model
        self.alias = alias
        concrete = model._meta.concrete_fields
        self.fields = [f for f in concrete if f.attname in fields or f.name in fields] if fields else list(concrete)
        self.attnames = [f.attname for f in self.fields]
        self.sql = ", ".join(f'{alias}."{f.column}"' for f in self.fields)
        self._converters: dict[str, list] = {}

    def __len__(self) -> int:
        return len(self.fields)

    def present(self, row: tuple, start: int = 0) -> bool:
        """Whether the row holds this model's row (a LEFT JOIN that found none reads a NULL primary key)."""
        return row[start + self._pk_position] is not None

    @cached_property
    def _pk_position(self) -> int:
        return self.attnames.index(self.model._meta.pk.attname)

    def _converters_for(self, using: str) -> list:
        """Per column, the (converter, expression) pairs the ORM's compiler would apply on this database."""
        found = self._converters.get(using)
        if found is None:
            connection = connections[using]
            found = []
            for field in self.fields:
                column = field.get_col(self.alias)
                found.append(
                    [
                        (converter, column)
                        for converter in connection.ops.get_db_converters(column) + column.get_db_converters(connection)
                    ]
                )
            self._converters[using] = found
        return found

    def values(self, row: tuple, start: int = 0, using: str = "default") -> list[Any]:
        """This model's values out of a row, from position `start`, converted as the ORM would."""
        connection = connections[using]
        values = list(row[start : start + len(self.fields)])
        for i, converters in enumerate(self._converters_for(using)):
            for converter, column in converters:
                values[i] = converter(values[i], column, connection)
        return values

    def instance(self, row: tuple, start: int = 0, using: str = "default") -> Model:
        return self.model.from_db(using, self.attnames, self.values(row, start, using))


class _FromFields:
    """A piece of a statement built from a model's concrete fields, and built again when they change.

    Django hands out a new `concrete_fields` tuple whenever a model's fields change, so comparing it by
    identity (one attribute read per use) keeps the statement in step with the model: a field added with a
    default needs no change to any hand-written statement (ai_core/tests/test_statement_columns.py adds one
    at run time and drives every hot statement through it).
    """

    def __init__(self, model: type[Model]) -> None:
        self.model = model
        self._built_for: tuple | None = None
        self._built: Any = None

    def _build(self, fields: list) -> Any:
        raise NotImplementedError

    def _current(self) -> Any:
        fields = self.model._meta.concrete_fields
        if fields is not self._built_for:
            self._built = self._build(fields)
            self._built_for = fields
        return self._built

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._current(), name)


class Insert(_FromFields):
    """A model's INSERT column list (every concrete field but the primary key), and an instance's values for
    it prepared as the ORM's own insert prepares them: defaults and auto_now applied, JSON and decimals
    adapted to the database. `exclude`: fields the statement fills itself (a foreign key to a row the same
    statement inserts, read from its CTE)."""

    def __init__(self, model: type[Model], *, exclude: tuple[str, ...] = ()) -> None:
        super().__init__(model)
        self.exclude = exclude

    def _build(self, fields: list) -> "_InsertShape":
        return _InsertShape([f for f in fields if not f.primary_key and f.name not in self.exclude])


class _InsertShape:
    def __init__(self, fields: list) -> None:
        self.fields = fields
        self.columns = ", ".join(f'"{f.column}"' for f in self.fields)
        self.placeholders = ", ".join(["%s"] * len(self.fields))
        self.plain_types = [_plain_type(f) for f in self.fields]
        # Fields whose pre_save is the plain read of the attribute (not auto_now and the like): read directly.
        self._read = [f.attname if type(f).pre_save is m.Field.pre_save else None for f in self.fields]

    def values(self, instance: Model) -> list[Any]:
        # The connection itself, not the `connection` proxy: each field reads it several times.
        conn = connections[instance._state.db or DEFAULT_DB_ALIAS]
        if conn.vendor != "postgresql":
            return [f.get_db_prep_save(f.pre_save(instance, add=True), conn) for f in self.fields]
        values = []
        attributes = instance.__dict__
        for field, plain, read in zip(self.fields, self.plain_types, self._read, strict=True):
            value = attributes[read] if read is not None and read in attributes else field.pre_save(instance, add=True)
            values.append(_prepared(field, plain, value, conn))
        return values

    def index_of(self, name: str) -> int:
        return next(i for i, f in enumerate(self.fields) if f.name == name)

    @cached_property
    def typed_placeholders(self) -> str:
        """Placeholders cast to their column's type, for an `INSERT … SELECT` (where PostgreSQL does not infer a
        parameter's type from the column it lands in)."""
        return ", ".join(f"CAST(%s AS {f.db_type(connection)})" for f in self.fields)


class InsertSelect(_FromFields):
    """`INSERT INTO <table> (<every concrete column>) SELECT <expressions>`, the caller appending its FROM.

    `given` maps the columns the statement sets (field name or attname) to their SQL expression, in the order
    of their placeholders; every other column but the primary key follows as a typed placeholder for the
    field's default (`defaults()`, to pass right after the given expressions' parameters). So an event or
    roll-up row written inside a larger statement stays complete when its model gains a field.
    """

    def __init__(self, model: type[Model], given: dict[str, str]) -> None:
        super().__init__(model)
        self.given = given

    def _build(self, fields: list) -> "_InsertSelectShape":
        return _InsertSelectShape(self.model, fields, self.given)

    def __str__(self) -> str:
        return self.sql


class _InsertSelectShape:
    def __init__(self, model: type[Model], fields: list, given: dict[str, str]) -> None:
        by_name = {name: model._meta.get_field(name) for name in given}
        named = {field.attname for field in by_name.values()}
        self.rest = [f for f in fields if not f.primary_key and f.attname not in named]
        columns = [f.column for f in by_name.values()] + [f.column for f in self.rest]
        expressions = list(given.values()) + [f"CAST(%s AS {f.db_type(connection)})" for f in self.rest]
        quoted = ", ".join(f'"{column}"' for column in columns)
        self.sql = f"INSERT INTO {model._meta.db_table} ({quoted}) SELECT {', '.join(expressions)}"

    def defaults(self) -> list[Any]:
        conn = connections[DEFAULT_DB_ALIAS]
        return [f.get_db_prep_save(f.get_default(), conn) for f in self.rest]


class Assignments(_FromFields):
    """`"<column>" = %s` for named fields of a model (an UPDATE's SET list; `typed`: each placeholder cast to its
    column's type, for a statement whose parameters PostgreSQL cannot type), and their values prepared as the
    ORM's update prepares them. A hot statement's SET list is one of a few fixed sets of names: get one with
    `assignments_of`, built once per model and names (and again when the model's fields change)."""

    def __init__(self, model: type[Model], names: tuple[str, ...], *, typed: bool = False) -> None:
        super().__init__(model)
        self.names, self.typed = names, typed

    def _build(self, fields: list) -> "_AssignmentsShape":
        return _AssignmentsShape(self.model, self.names, typed=self.typed)


class _AssignmentsShape:
    def __init__(self, model: type[Model], names: tuple[str, ...], *, typed: bool) -> None:
        self.fields = [model._meta.get_field(name) for name in names]
        self.parts = [
            f'"{f.column}" = ' + (f"CAST(%s AS {f.db_type(connection)})" if typed else "%s") for f in self.fields
        ]
        self.sql = ", ".join(self.parts)
        self.plain_types = [_plain_type(f) for f in self.fields]

    def values(self, values: Iterable[Any]) -> list[Any]:
        """`values` (in the names' order) as the database stores them."""
        conn = connections[DEFAULT_DB_ALIAS]
        if conn.vendor != "postgresql":
            return [f.get_db_prep_save(v, conn) for f, v in zip(self.fields, values, strict=True)]
        return [_prepared(f, p, v, conn) for f, p, v in zip(self.fields, self.plain_types, values, strict=True)]


_ASSIGNMENTS: dict[tuple[type[Model], tuple[str, ...], bool], Assignments] = {}


def assignments_of(model: type[Model], names: tuple[str, ...], *, typed: bool = False) -> Assignments:
    key = (model, names, typed)
    found = _ASSIGNMENTS.get(key)
    if found is None:
        found = _ASSIGNMENTS[key] = Assignments(model, names, typed=typed)
    return found


def _prepared(field, plain: type | None, value: Any, conn) -> Any:
    """PostgreSQL: the value as the field's preparation would hand it to the database. A value it would pass on
    unchanged skips it: a bulk creation prepared 23 fields x 10 000 jobs, a fifth of its time. Anything else
    (JSON, decimals, another type) is prepared by the field as the ORM does."""
    if value is None or (type(value) is plain and (plain is not datetime or value.tzinfo is not None)):
        return value
    return field.get_db_prep_save(value, conn)


_INTEGER_FIELDS = (
    m.AutoField,
    m.BigAutoField,
    m.SmallAutoField,
    m.IntegerField,
    m.BigIntegerField,
    m.SmallIntegerField,
    m.PositiveIntegerField,
    m.PositiveBigIntegerField,
    m.PositiveSmallIntegerField,
)


def _plain_type(field) -> type | None:
    """The Python type whose values (and None) a field's get_db_prep_save returns unchanged on PostgreSQL
    (an aware datetime for a datetime field), or None when every value goes through it."""
    if isinstance(field, m.ForeignKey):
        return _plain_type(field.target_field)
    kind = type(field)
    if kind in (m.CharField, m.TextField):
        return str
    if kind in _INTEGER_FIELDS:
        return int
    if kind is m.BooleanField:
        return bool
    if kind is m.DateTimeField:
        return datetime  # psycopg adapts aware datetimes itself (Django's PostgreSQL backend passes them on)
    return None


def bulk_insert(model: type[Model], instances: list[Model], *, batch_size: int = 2000) -> None:
    """Insert many new rows, setting each instance's primary key: on PostgreSQL through COPY (ids drawn from
    the table's sequence first, in one statement; a non-automatic key, e.g. a one-to-one, is the instance's),
    elsewhere through bulk_create.

    Measured for bulk submission (batches app): bulk_create spent most of its time building its multi-row
    INSERTs in Python; COPY streams the rows as they are prepared (Insert.values, the ORM's own preparation).
    """
    if not instances:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create(instances, batch_size=batch_size)
        return
    meta = model._meta
    pk = meta.pk
    if pk.get_internal_type() in {"AutoField", "BigAutoField", "SmallAutoField"}:
        for instance, value in zip(instances, _next_pks(model, len(instances)), strict=True):
            setattr(instance, pk.attname, value)
    columns = Insert(model)
    quoted = connection.ops.quote_name
    copy_sql = f"COPY {quoted(meta.db_table)} ({quoted(pk.column)}, {columns.columns}) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(copy_sql) as copy:
        for instance in instances:
            copy.write_row([getattr(instance, pk.attname), *columns.values(instance)])
    for instance in instances:
        instance._state.adding = False
        instance._state.db = connection.alias


def bulk_insert_like(model: type[Model], template: Model, varying: list[str], rows: list[tuple]) -> list[int]:
    """Insert one new row per item of `rows`: the `template` instance's values but for the fields named in
    `varying`, which each row gives in that order. Returns the new rows' primary keys, in order.

    The template is prepared once (Insert.values: defaults, auto_now, adaptation), each row only in its varying
    fields: building and preparing a model instance per row was half of a 10 000-job bulk creation. A default
    that must differ per row (a random id) is one of the varying fields. COPY on PostgreSQL (ids drawn from
    the table's sequence first), bulk_create of instances elsewhere."""
    if not rows:
        return []
    if connection.vendor != "postgresql":
        base = {f.attname: getattr(template, f.attname) for f in model._meta.concrete_fields if not f.primary_key}
        instances = [model(**{**base, **dict(zip(varying, row, strict=True))}) for row in rows]
        model.objects.bulk_create(instances, batch_size=2000)
        return [instance.pk for instance in instances]
    meta, columns = model._meta, Insert(model)
    conn = connections[DEFAULT_DB_ALIAS]
    pks = _next_pks(model, len(rows))
    base = columns.values(template)
    slots = [columns.index_of(name) for name in varying]
    prepare = [(columns.fields[i], columns.plain_types[i]) for i in slots]
    quoted = connection.ops.quote_name
    copy_sql = f"COPY {quoted(meta.db_table)} ({quoted(meta.pk.column)}, {columns.columns}) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(copy_sql) as copy:
        for pk, row in zip(pks, rows, strict=True):
            values = base.copy()
            for slot, (field, plain), value in zip(slots, prepare, row, strict=True):
                values[slot] = _prepared(field, plain, value, conn)
            copy.write_row([pk, *values])
    return pks


def _next_pks(model: type[Model], count: int) -> list[int]:
    """`count` new ids of the model's automatic primary key, from its sequence in one statement."""
    meta = model._meta
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
            [meta.db_table, meta.pk.column, count],
        )
        return [value for (value,) in cursor.fetchall()]


def bulk_insert_values(model: type[Model], rows: list[dict[str, Any]]) -> None:
    """Insert many rows given as {field name: value} (values the database takes as they are: ids, strings,
    numbers, datetimes), without building model instances: COPY on PostgreSQL, bulk_create elsewhere.
    Every row names the same fields; the model's other columns take their field's default."""
    if not rows:
        return
    if connection.vendor != "postgresql":
        model.objects.bulk_create([model(**row) for row in rows], batch_size=2000)
        return
    names = list(rows[0])
    fields = [model._meta.get_field(name) for name in names]
    named = {field.attname for field in fields}
    rest = [f for f in model._meta.concrete_fields if not f.primary_key and f.attname not in named]
    defaults = [f.get_db_prep_save(f.get_default(), connection) for f in rest]
    quoted = connection.ops.quote_name
    columns = ", ".join(quoted(field.column) for field in fields + rest)
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {quoted(model._meta.db_table)} ({columns}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row([row[name] for name in names] + defaults)
