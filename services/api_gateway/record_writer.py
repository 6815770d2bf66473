"""The build's record writes, group-committed.

Every server a build touches moves through a few record writes: created,
claimed, spawning on a host, ACTIVE (or ERROR). One transaction per write
and server cost more than everything else api_gateway does for a boot, so
writes that arrive together share one transaction
(services/common/batching.py), one statement per kind of write, in
synchronous Core on the database's writer (Database.run_write: one thread
hop per transaction on SQLite):

- `add` inserts the records and their create actions of several creates
  (batched by the caller, services/api_gateway/admission.py);
- `move` applies transitions: each changes a server's fields only while its
  task state is still the one expected (a delete may have taken it over
  meanwhile), and may close its newest open action of a kind. Its outcome
  says whether the server moved.
- `begin_delete` marks servers deleting, whatever they were doing: it ends
  their open actions and opens a delete action. Its outcome is the server,
  now deleting, or None if it was deleting or deleted already, or not the caller's
  to delete.

The conditions are checked against rows locked for the transaction (SQLite's
write lock, PostgreSQL's FOR UPDATE), so a concurrent delete either comes
before a transition, which then does not apply, or after it.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, JSON, String, Text, bindparam, insert, select, text, update
from sqlalchemy.engine import Connection

from services.api_gateway.models import ServerActionRow, ServerRow
from services.api_gateway.servers import (
    DELETED,
    SERVER_COLUMNS,
    action_values,
    now,
    server_row,
    server_values,
)
from services.common.batching import Batcher
from services.common.context import RequestContext
from services.common.db import Database, in_ids

_servers = ServerRow.__table__
_actions = ServerActionRow.__table__
# Rows per transaction: bounds a transaction's statements and lock time.
MAX_BATCH = 500


@dataclass(frozen=True)
class Transition:
    server_id: str
    expected_task: str | None  # None: whatever the server is doing
    fields: dict[str, Any]
    # (action, result, message): close the newest open action of that kind.
    close: tuple[str, str, str] | None = None


@dataclass(frozen=True)
class NewRecords:
    ctx: RequestContext
    rows: list[ServerRow]


def _add(conn: Connection, creates: list[NewRecords]) -> None:
    rows = [row for create in creates for row in create.rows]
    conn.execute(insert(_servers), [server_values(row) for row in rows])
    conn.execute(
        insert(_actions),
        [
            action_values(row.id, "create", create.ctx, row.created_at)
            for create in creates
            for row in create.rows
        ],
    )


def _move(conn: Connection, transitions: list[Transition]) -> list[bool]:
    ids = {t.server_id for t in transitions}
    current = dict(
        conn.execute(
            select(_servers.c.id, _servers.c.task_state)
            .where(in_ids(conn, _servers.c.id, ids))
            .order_by(_servers.c.id)  # one lock order for every writer: no deadlocks
            .with_for_update()
        ).all()
    )
    moved: list[bool] = []
    by_fields: dict[tuple[str, ...], list[dict]] = defaultdict(list)
    closes: list[dict] = []
    at = now()
    for t in transitions:
        task = current.get(t.server_id)
        ok = task is not None and (t.expected_task is None or task == t.expected_task)
        moved.append(ok)
        if not ok:
            continue
        values = {f"v_{name}": value for name, value in t.fields.items()}
        by_fields[tuple(sorted(t.fields))].append({"v_id": t.server_id, **values})
        if t.close:
            action, result, message = t.close
            closes.append(
                {"c_id": t.server_id, "c_action": action, "c_result": result, "c_message": message}
            )
    postgresql = conn.dialect.name == "postgresql"
    for names, params in by_fields.items():
        if postgresql:
            conn.execute(_update_from_arrays(names), _columns_of("v_", names, params, at))
        else:
            conn.execute(_update_statement(names, at), params)
    if closes:
        if postgresql:
            conn.execute(_CLOSE_FROM_ARRAYS, _columns_of("c_", _CLOSE_NAMES, closes, at))
        else:
            conn.execute(_close_statement(at), closes)
    return moved


@dataclass(frozen=True)
class Deletion:
    ctx: RequestContext
    server_id: str


def _begin_deletes(conn: Connection, deletions: list[Deletion]) -> list[ServerRow | None]:
    at = now()
    ids = {d.server_id for d in deletions}
    current = {
        row.id: row
        for row in conn.execute(
            select(_servers)
            .where(in_ids(conn, _servers.c.id, ids))
            .order_by(_servers.c.id)
            .with_for_update()
        )
    }
    outcomes: list[ServerRow | None] = []
    taken: set[str] = set()
    for d in deletions:
        row = current.get(d.server_id)
        ok = (
            row is not None
            and (d.ctx.is_admin or row.project_id == d.ctx.project_id)
            and row.status != DELETED
            and row.task_state != "deleting"
            and d.server_id not in taken  # a second delete in this batch changes nothing
        )
        outcomes.append(_deleting(row, at) if ok else None)
        if ok:
            taken.add(d.server_id)
    if not taken:
        return outcomes
    conn.execute(
        update(_servers)
        .where(in_ids(conn, _servers.c.id, taken))
        .values(task_state="deleting", updated_at=at)
    )
    # Whatever was in progress ends here.
    conn.execute(
        update(_actions)
        .where(in_ids(conn, _actions.c.server_id, taken), _actions.c.result == "in-progress")
        .values(result="error", message="interrupted by a delete", finish_time=at)
    )
    conn.execute(
        insert(_actions),
        [
            action_values(d.server_id, "delete", d.ctx, at)
            for d, row in zip(deletions, outcomes, strict=True)
            if row is not None
        ],
    )
    return outcomes


def _deleting(row, at: datetime) -> ServerRow:
    server = server_row(row._mapping)
    server.task_state, server.updated_at = "deleting", at
    return server


def _update_statement(names: tuple[str, ...], at: datetime):
    return (
        update(_servers)
        .where(_servers.c.id == bindparam("v_id"))
        .values(updated_at=at, **{SERVER_COLUMNS[n]: bindparam(f"v_{n}") for n in names})
    )


def _close_statement(at: datetime):
    # Only the create action is ever closed here, and a server has one open at most.
    return (
        update(_actions)
        .where(
            _actions.c.server_id == bindparam("c_id"),
            _actions.c.action == bindparam("c_action"),
            _actions.c.result == "in-progress",
        )
        .values(result=bindparam("c_result"), message=bindparam("c_message"), finish_time=at)
    )


# On PostgreSQL a batch of moves updates its rows in one execution per
# statement, from arrays (one per column) joined by unnest, instead of one
# execution per row: SQLAlchemy's executemany sends a Bind and an Execute per
# row and PostgreSQL runs the plan once for each.


# Server fields stored as JSON: sent as text and cast back.
_JSON = frozenset(n for n, c in SERVER_COLUMNS.items() if isinstance(_servers.c[c].type, JSON))


def _columns_of(prefix: str, names: tuple[str, ...], params: list[dict], at: datetime) -> dict:
    """Per-row parameters as one array per column (JSON as its text), plus the
    batch's time."""
    columns: dict[str, Any] = {"at": at, "ids": [p[f"{prefix}id"] for p in params]}
    for name in names:
        values = [p[f"{prefix}{name}"] for p in params]
        columns[f"{prefix}{name}"] = [json.dumps(v) for v in values] if name in _JSON else values
    return columns


@functools.cache
def _update_from_arrays(names: tuple[str, ...]):
    """As _update_statement, from one array per field: JSON goes as text and
    is cast back."""
    columns = {name: f'"{SERVER_COLUMNS[name]}"' for name in names}
    sets = ", ".join(
        f"{c} = CAST(v.{c} AS json)" if name in _JSON else f"{c} = v.{c}"
        for name, c in columns.items()
    )
    return text(
        f"UPDATE {_servers.name} SET updated_at = :at, {sets} "
        f"FROM unnest(:ids, {', '.join(f':v_{name}' for name in names)}) "
        f"AS v(id, {', '.join(columns.values())}) WHERE {_servers.name}.id = v.id"
    ).bindparams(
        bindparam("at", type_=_servers.c.updated_at.type),
        bindparam("ids", type_=ARRAY(String)),
        *(
            bindparam(
                f"v_{name}",
                type_=ARRAY(Text if name in _JSON else _servers.c[SERVER_COLUMNS[name]].type),
            )
            for name in names
        ),
    )


_CLOSE_NAMES = ("action", "result", "message")
# As _close_statement, from arrays.
_CLOSE_FROM_ARRAYS = text(
    f"UPDATE {_actions.name} SET result = v.result, message = v.message, finish_time = :at "
    "FROM unnest(:ids, :c_action, :c_result, :c_message) AS v(server_id, action, result, message) "
    f"WHERE {_actions.name}.server_id = v.server_id AND {_actions.name}.action = v.action "
    f"AND {_actions.name}.result = 'in-progress'"
).bindparams(
    bindparam("at", type_=_actions.c.finish_time.type),
    *(bindparam(n, type_=ARRAY(String)) for n in ("ids", "c_action", "c_result", "c_message")),
)


class RecordWriter:
    def __init__(self, db: Database) -> None:
        self._db = db
        # One writer: a second transaction would only queue on the write lock.
        # A server's transitions never share a batch: the updates of a batch go
        # by kind of fields, not in the order they came.
        self._moves: Batcher[Transition, bool] = Batcher(
            self._move_all, max_batch=MAX_BATCH, distinct=lambda t: t.server_id
        )
        self._deletions: Batcher[Deletion, ServerRow | None] = Batcher(
            self._begin_deletes, max_batch=MAX_BATCH
        )

    async def add(self, creates: list[NewRecords]) -> None:
        """Insert the records and their create actions, in one transaction (the
        caller batches creates already: services/api_gateway/admission.py)."""
        await self._db.run_write(_add, creates)

    async def _move_all(self, transitions: list[Transition]) -> list[bool]:
        return await self._db.run_write(_move, transitions)

    async def move(self, transition: Transition) -> bool:
        """Apply the transition; False if the server was not in the expected task."""
        return await self._moves.submit(transition)

    async def _begin_deletes(self, deletions: list[Deletion]) -> list[ServerRow | None]:
        return await self._db.run_write(_begin_deletes, deletions)

    async def begin_delete(self, ctx: RequestContext, server_id: str) -> ServerRow | None:
        """Mark the server deleting, whatever it was doing, and return it as it was;
        None if it is deleting or deleted already, or not the caller's."""
        return await self._deletions.submit(Deletion(ctx, server_id))
