"""Claims: usage taken and given back per consumer, never beyond a limit.

One write transaction per claim, or per batch of claims (a multi-create's
servers: their deltas are summed and checked once):
  1. the claim row is inserted, keyed by the consumer id. It is the
     idempotency key: if the consumer holds a claim already, an identical
     retry is answered with it and anything else is refused. On PostgreSQL a
     concurrent insert of the same key waits for the first to commit or roll
     back, so a retry racing its original still counts once;
  2. each resource's usage row is made to exist, then grows by a conditional
     UPDATE that matches only while the new total fits the limit. Rows are
     taken in one order (resource, scope) by every claim and release, so
     concurrent writers queue on the row locks instead of deadlocking; a
     waiting UPDATE re-checks its condition against the committed total.
If any resource does not fit the transaction rolls back: nothing is claimed.
A release deletes the claim row (only one release can) and subtracts
exactly what it recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.db import Database
from services.common.errors import (
    AlreadyExists,
    Conflict,
    FieldViolation,
    InvalidArgument,
    QuotaExceeded,
)
from services.quota.limits import PER_SERVER_GROUP, Limit, read_limits
from services.quota.models import ClaimRow, UsageRow

_claims = ClaimRow.__table__
_usages = UsageRow.__table__


@dataclass(frozen=True)
class NewClaim:
    consumer_id: str
    project_id: str
    deltas: dict[str, int]
    server_group_id: str = ""


@dataclass(frozen=True, kw_only=True)
class Claim:
    consumer_id: str
    project_id: str
    deltas: dict[str, int]
    server_group_id: str
    created_at: datetime


def check_server_group(new: NewClaim) -> None:
    """server_group_members counts a group's members: the group must be named,
    and naming one for nothing is a caller's mistake worth reporting."""
    if (PER_SERVER_GROUP in new.deltas) != bool(new.server_group_id):
        raise InvalidArgument(
            f"server_group_id is required with a {PER_SERVER_GROUP} delta, and only with it",
            code="stratus.invalid_field",
            field_violations=(
                FieldViolation("server_group_id", f"set it exactly when {PER_SERVER_GROUP} is"),
            ),
        )


def _scope(resource: str, server_group_id: str) -> str:
    return server_group_id if resource == PER_SERVER_GROUP else ""


def _from_row(row) -> Claim:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return Claim(
        consumer_id=row.consumer_id,
        project_id=row.project_id,
        deltas=dict(row.amounts),
        server_group_id=row.server_group_id,
        created_at=created,
    )


async def _insert_claims(conn: AsyncConnection, rows: list[dict]) -> set[str]:
    """Insert the claim rows of consumers that hold none; the consumer ids inserted."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    result = await conn.execute(
        insert(_claims).values(rows).on_conflict_do_nothing().returning(_claims.c.consumer_id)
    )
    return set(result.scalars())


def check_batch(news: list[NewClaim]) -> NewClaim:
    """A batch is one project's and one server group's: its usage grows as one claim
    of the summed deltas (returned), checked against the limits once."""
    first = news[0]
    if any(
        (n.project_id, n.server_group_id) != (first.project_id, first.server_group_id) for n in news
    ):
        raise InvalidArgument(
            "every claim of a batch must name the same project_id and server_group_id; "
            "send one batch per project and group",
            code="stratus.invalid_field",
            field_violations=(FieldViolation("claims", "mixed projects or server groups"),),
        )
    if len({n.consumer_id for n in news}) < len(news):
        raise InvalidArgument(
            "a consumer_id appears twice in the batch; each consumer claims once",
            code="stratus.invalid_field",
            field_violations=(FieldViolation("claims", "duplicate consumer_id"),),
        )
    total: dict[str, int] = {}
    for new in news:
        check_server_group(new)
        for resource, n in new.deltas.items():
            total[resource] = total.get(resource, 0) + n
    return NewClaim(f"batch of {len(news)}", first.project_id, total, first.server_group_id)


async def _existing_answer(conn: AsyncConnection, new: NewClaim) -> Claim:
    """The answer to a claim whose consumer holds one: the same claim, or a refusal."""
    found = await conn.execute(select(_claims).where(_claims.c.consumer_id == new.consumer_id))
    row = found.first()
    if row is None:
        # Released between our insert and this read: rare, and safe to retry.
        raise Conflict(
            f"consumer {new.consumer_id}: its claim was released concurrently; retry",
            code="stratus.concurrent_update",
        )
    held = _from_row(row)
    if (held.project_id, held.deltas, held.server_group_id) == (
        new.project_id,
        new.deltas,
        new.server_group_id,
    ):
        return held  # a retry: it counted once already
    raise AlreadyExists(
        f"consumer {new.consumer_id} already holds a different claim "
        f"({_describe(held.deltas)} in project {held.project_id}); release it first, "
        "or claim the difference under another consumer id",
        code="quota.claim_exists",
    )


def _describe(deltas: dict[str, int]) -> str:
    return ", ".join(f"{resource} {n}" for resource, n in sorted(deltas.items()))


async def _ensure_usage_rows(
    conn: AsyncConnection, project_id: str, keys: list[tuple[str, str]]
) -> None:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    await conn.execute(
        insert(_usages).on_conflict_do_nothing(),
        [{"project_id": project_id, "resource": r, "scope": s, "used": 0} for r, s in keys],
    )


def _usage_row(project_id: str, resource: str, scope: str):
    return (
        (_usages.c.project_id == project_id)
        & (_usages.c.resource == resource)
        & (_usages.c.scope == scope)
    )


async def _take(
    conn: AsyncConnection, project_id: str, key: tuple[str, str], n: int, limit: Limit
) -> bool:
    """Add n to one usage row if the total stays within the limit; True if it did."""
    resource, scope = key
    statement = update(_usages).where(_usage_row(project_id, resource, scope))
    if limit.value >= 0:
        statement = statement.where(_usages.c.used + n <= limit.value)
    result = await conn.execute(statement.values(used=_usages.c.used + n))
    return result.rowcount == 1


async def _exceeded(
    conn: AsyncConnection,
    new: NewClaim,
    keys: list[tuple[str, str]],
    refused_at: int,
    limits: dict[str, Limit],
) -> QuotaExceeded:
    """Every resource of the claim that does not fit, with limit, usage and ask.

    Rows before refused_at already hold this claim's amount (the rollback
    will undo it); it is taken out so "in use" is what others hold.
    """
    rows = await conn.execute(
        select(_usages.c.resource, _usages.c.scope, _usages.c.used).where(
            _usages.c.project_id == new.project_id,
            tuple_(_usages.c.resource, _usages.c.scope).in_(keys),
        )
    )
    used = {(resource, scope): n for resource, scope, n in rows}
    texts, violations = [], []
    for i, key in enumerate(keys):
        resource, scope = key
        asked = new.deltas[resource]
        in_use = used.get(key, 0) - (asked if i < refused_at else 0)
        limit = limits[resource]
        # The refused row is reported even if a release since made room:
        # the claim was refused on what the row held then.
        if i == refused_at or not limit.allows(in_use, asked):
            detail = f"limit {limit.value}, in use {in_use}, requested {asked}"
            label = f"{resource} of server group {scope}" if scope else resource
            texts.append(f"{label}: {detail}")
            violations.append(FieldViolation(f"deltas[{resource!r}]", detail))
    return QuotaExceeded(
        f"quota exceeded for {'; for '.join(texts)} (project {new.project_id}); "
        "release some, or ask an administrator to raise the limit",
        code="quota.exceeded",
        field_violations=tuple(violations),
    )


class Claims:
    def __init__(self, db: Database, defaults: dict[str, int]) -> None:
        self._db = db
        self._defaults = defaults

    async def claim(self, new: NewClaim) -> Claim:
        return (await self.claim_batch([new]))[0]

    async def claim_batch(self, news: list[NewClaim]) -> list[Claim]:
        """Claims in one transaction, all or nothing (see check_batch); the answers
        in the order asked."""
        check_batch(news)
        created_at = datetime.now(UTC)
        async with self._db.write() as conn:
            inserted = await _insert_claims(
                conn,
                [
                    {
                        "consumer_id": new.consumer_id,
                        "project_id": new.project_id,
                        "server_group_id": new.server_group_id,
                        "amounts": dict(new.deltas),
                        "created_at": created_at,
                    }
                    for new in news
                ],
            )
            # Retries of claims that took effect are answered, not counted again.
            held = {
                new.consumer_id: await _existing_answer(conn, new)
                for new in news
                if new.consumer_id not in inserted
            }
            fresh = [new for new in news if new.consumer_id in inserted]
            if fresh:
                await self._take_all(conn, check_batch(fresh))
        return [
            held.get(new.consumer_id)
            or Claim(
                consumer_id=new.consumer_id,
                project_id=new.project_id,
                deltas=dict(new.deltas),
                server_group_id=new.server_group_id,
                created_at=created_at,
            )
            for new in news
        ]

    async def _take_all(self, conn: AsyncConnection, total: NewClaim) -> None:
        """Grow usage by every delta of `total`, or raise QuotaExceeded."""
        keys = sorted((r, _scope(r, total.server_group_id)) for r in total.deltas)
        limits = await read_limits(conn, total.project_id, self._defaults)
        await _ensure_usage_rows(conn, total.project_id, keys)
        for i, key in enumerate(keys):
            if not await _take(conn, total.project_id, key, total.deltas[key[0]], limits[key[0]]):
                raise await _exceeded(conn, total, keys, i, limits)

    async def release(self, consumer_id: str) -> None:
        """Give back what the consumer claimed. No claim: already released."""
        async with self._db.write() as conn:
            released = (
                await conn.execute(
                    delete(_claims)
                    .where(_claims.c.consumer_id == consumer_id)
                    .returning(_claims.c.project_id, _claims.c.server_group_id, _claims.c.amounts)
                )
            ).first()
            if released is None:
                return
            project_id, server_group_id, amounts = released
            for resource, n in sorted(amounts.items()):
                scope = _scope(resource, server_group_id)
                await conn.execute(
                    update(_usages)
                    .where(_usage_row(project_id, resource, scope))
                    .values(used=_usages.c.used - n)
                )
