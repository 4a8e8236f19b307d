"""The lifecycle's hook registry: how extension apps (ai_usage, ai_openai, webhooks, batches) attach to a job's
creation, re-planning, end and deletion without ai_core importing them.

Each app registers its hooks in its `AppConfig.ready()` (`hooks.register(on_final=..., ...)`). Every hook is
batch-shaped: it receives a list of payloads (one per job), so a bulk creation or a batched end calls each hook
once. Statement text never crosses the app line: an extension that must write in the lifecycle's own statement
says WHAT to write as data (`InsertRow`, `UpdateRows`: model instances and field values of its own models) and
the lifecycle builds the SQL from the models' `_meta` (ai_core/statements.py); anything else it writes with its
own statements, in its own app, from a hook that runs inside the lifecycle's transaction.

The hooks, in the order a job meets them (ai_core/lifecycle.py calls them; docs/ARCHITECTURE.md):

- `guard(created) -> bool | RowExists`: whether the creation of these jobs needs a transaction for the
  extension (True), nothing (False), or nothing unless a row exists (`RowExists`, checked inside the one-statement
  creation on PostgreSQL; where it matches, the statement writes nothing and the lifecycle creates the job in a
  transaction instead).
- `rows_at_creation(created) -> list[tuple[int, Model]]`: unsaved rows of the extension's own models to write
  with the jobs, each with the index of its job in `created` (the lifecycle sets their link to the job), in the
  creation statement or its transaction.
- `on_created(created)`: in the creating transaction, after the jobs' rows (a quota reservation).
- `on_replanned(replans)`: in the transaction of a pending job's new input or fallback model, before its
  compare-and-set (re-reservation, the OpenAI row's new parameters).
- `probes -> dict[name, RowExists]`: per job, whether the extension holds state for it, read along the engine's
  claim (no extra query) and kept on the job (attribute `name`, and `job.probed[name]`), so its end can skip
  what has nothing to do.
- `price(finals) -> list[Decimal | None]`: the cost of each ending job (one pricing hook: ai_usage).
- `needs_transaction(finals) -> bool`: whether the end of these jobs needs a transaction (an open reservation);
  otherwise, on PostgreSQL, an end is one statement with no transaction at all.
- `before_final(finals)`: in the final transaction, before the compare-and-set (lock what the end will change,
  in the lock order of a job's end: the extension's rows first, the job's row last).
- `on_final(finals) -> list[InsertRow | UpdateRows]`: the end's writes, conditional on the compare-and-set:
  parts of the transition's own statement (PostgreSQL, no transaction), or, in the end's transaction, written
  just before a single job's compare-and-set (rolled back if it fails) or after a batch's (for the moved jobs
  only). When `final.in_transaction` it may also write itself; otherwise it must only return its writes.
- `on_final_committed(committed: list[Committed])`: after the commit of the jobs' end (webhooks); never for
  an end that was rolled back.
- `on_deleted(job_pks)`: in the transaction of a deletion, before the job's row is locked.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Model

# --- payloads -----------------------------------------------------------------------------------------


@dataclass
class Created:
    """A job being created. `job` is unsaved in `guard` and `rows_at_creation`, saved (pk set) in `on_created`.

    In a bulk creation (`bulk`, a batch's jobs) there is no instance per job (10 000 of them cost as much as the
    insert): `job` is None and `job_pk`, `brand` and `input_data` say which job it is."""

    job: Any  # ai_core.models.AIJob, or None in a bulk creation
    choice: Any  # ai_providers.selectors.ModelChoice: the model it will run
    input_data: Any = None
    brand: Any = None
    job_pk: int | None = None
    openai: bool = False  # submitted through /ai/openai/: wants its OpenAI row whatever the model
    batch: bool = False  # routed to a provider's Batch API (reserved at its batch price)
    request: Callable[[], Any] | None = None  # the provider request it will send (built on demand)
    bulk: bool = False  # one of a bulk creation (a batch): the hooks see all its jobs in one call
    guard_matched: bool = False  # the one-statement creation found a guard's row: created in a transaction


@dataclass
class Replanned:
    """A pending job whose input changed, or a job switching to a fallback model (`job` as it will be)."""

    job: Any
    choice: Any
    request: Callable[[], Any]
    input_data: dict | None = None  # the new input (None: a fallback switch, the input is unchanged)


@dataclass
class Final:
    """A job reaching a final state. `job`: the copy the lifecycle holds (fields that do not change while a job
    runs; `job.probed` when read by the engine's claim). `notes`: each extension's own scratch, keyed by its
    app label, kept from one hook to the next of the same end."""

    job: Any
    to: str
    attempt: int
    at: datetime
    tokens: Any  # ai_providers.money.TokenUsage
    cost: Decimal | None = None  # the amount billed when the caller knows it; else priced by the `price` hook
    batch: bool = False  # answered through a provider's Batch API
    result_data: dict | None = None
    error_code: str = ""
    charged: Decimal | None = None  # what the roll-up records (set from the `price` hook)
    in_transaction: bool = False  # False: the end is one statement, on_final must only return its writes
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def job_pk(self) -> int:
        return self.job.pk


@dataclass(frozen=True)
class Committed:
    """A job whose final state has committed."""

    job_pk: int
    status: str
    brand_id: int  # the job's brand (webhooks: whose endpoints want the event)


# --- what an extension asks the lifecycle to write or read (data, never SQL) -------------------------


@dataclass(frozen=True)
class RowExists:
    """A condition on an extension's rows: one of `model` whose `key` field equals the job's id (probes) or the
    job's company id (creation guards), and whose fields equal `where` (constants)."""

    model: type[Model]
    key: str
    where: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class InsertRow:
    """Insert `row` (an unsaved instance linked to the job) if the job's end moves it; a conflicting row (a
    duplicate delivery's) is skipped."""

    job_pk: int
    row: Model


@dataclass(frozen=True)
class UpdateRows:
    """Set `values` on the rows of `model` whose `key` (a foreign key to the job) is the job."""

    job_pk: int
    model: type[Model]
    key: str
    values: dict[str, Any]


# --- the registry -------------------------------------------------------------------------------------

POINTS = (
    "guard",
    "rows_at_creation",
    "on_created",
    "on_replanned",
    "price",
    "needs_transaction",
    "before_final",
    "on_final",
    "on_final_committed",
    "on_deleted",
)


class Registry:
    def __init__(self) -> None:
        self._hooks: dict[str, list[Callable]] = {point: [] for point in POINTS}
        self._order: dict[Callable, int] = {}
        self.probes: dict[str, RowExists] = {}

    def register(self, *, probes: dict[str, RowExists] | None = None, order: int = 50, **hooks: Callable) -> None:
        """Add hooks (keyword: the hook point) and claim-time probes; registering the same function twice at
        one point keeps one (AppConfig.ready may run more than once in tests).

        `order`: hooks run by ascending order (then registration). It is the lock order across extensions, the
        same at every point so that two transactions never lock one app's rows and another's in opposite
        orders: ai_usage (quota reservations and periods) registers 10, locked before any other extension's
        rows (default 50), and the job's own row comes last."""
        for point, hook in hooks.items():
            if point not in self._hooks:
                raise TypeError(f"unknown hook point {point!r} (one of {', '.join(POINTS)})")
            if hook not in self._hooks[point]:
                self._hooks[point].append(hook)
                self._order[hook] = order
                self._hooks[point].sort(key=lambda h: self._order.get(h, 50))  # stable: registration order next
        for name in probes or {}:
            if not name.isidentifier() or name.startswith("_"):
                raise ValueError(f"a probe's name is the job attribute it sets: {name!r} is not one")
        self.probes.update(probes or {})

    def unregister(self, **hooks: Callable) -> None:
        for point, hook in hooks.items():
            if hook in self._hooks[point]:
                self._hooks[point].remove(hook)

    def __getitem__(self, point: str) -> list[Callable]:
        return self._hooks[point]

    # What the lifecycle asks, in one place.

    def creation_guards(self, created: list[Created]) -> list[RowExists] | None:
        """The conditions under which a one-statement creation of `created` writes nothing; None when the
        creation needs a transaction whatever they are."""
        guards = []
        for hook in self._hooks["guard"]:
            answer = hook(created)
            if answer is True:
                return None
            if isinstance(answer, RowExists):
                guards.append(answer)
        return guards

    def rows_at_creation(self, created: list[Created]) -> list[tuple[int, Model]]:
        return [item for hook in self._hooks["rows_at_creation"] for item in hook(created)]

    def call(self, point: str, payloads: list) -> None:
        if payloads:
            for hook in self._hooks[point]:
                hook(payloads)

    def price(self, finals: list[Final]) -> None:
        """Set each final's `charged` (the caller's `cost` when given and no pricing hook is registered)."""
        for final in finals:
            final.charged = final.cost
        for hook in self._hooks["price"]:
            for final, charged in zip(finals, hook(finals), strict=True):
                final.charged = charged

    def needs_transaction(self, finals: list[Final]) -> bool:
        return any(hook(finals) for hook in self._hooks["needs_transaction"])

    def final_writes(self, finals: list[Final]) -> list[InsertRow | UpdateRows]:
        return [write for hook in self._hooks["on_final"] for write in hook(finals)] if finals else []


hooks = Registry()
register = hooks.register
