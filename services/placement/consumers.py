"""Consumers: who holds allocations, at which consumer generation."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.engine import Connection

from services.common.db import in_ids
from services.common.errors import Conflict
from services.placement.models import AllocationRow, ConsumerRow, ProviderRow

consumers = ConsumerRow.__table__
allocations = AllocationRow.__table__
_providers = ProviderRow.__table__

# provider uuid -> resource class -> amount
Holdings = dict[str, dict[str, int]]


@dataclass(frozen=True)
class ConsumerAllocations:
    consumer_uuid: str
    generation: int = 0
    project_id: str = ""
    user_id: str = ""
    allocations: Holdings = field(default_factory=dict)


@dataclass(frozen=True)
class PutAllocations:
    consumer_uuid: str
    generation: int | None  # None: a new consumer
    project_id: str
    user_id: str
    allocations: Holdings


@dataclass(frozen=True)
class Release:
    """Give back everything a consumer holds; at `generation` if one is given."""

    consumer_uuid: str
    generation: int | None = None


def consumer_conflict(consumer_uuid: str, message: str) -> Conflict:
    return Conflict(f"consumer {consumer_uuid}: {message}", code="placement.concurrent_update")


def read_consumer(conn: Connection, consumer_uuid: str) -> ConsumerAllocations | None:
    row = (
        conn.execute(
            select(consumers.c.generation, consumers.c.project_id, consumers.c.user_id).where(
                consumers.c.uuid == consumer_uuid
            )
        )
    ).first()
    if row is None:
        return None
    held: Holdings = {}
    rows = conn.execute(
        select(_providers.c.uuid, allocations.c.resource_class, allocations.c.used)
        .join(_providers, _providers.c.id == allocations.c.provider_id)
        .where(allocations.c.consumer_uuid == consumer_uuid)
    )
    for provider_uuid, resource_class, used in rows:
        held.setdefault(provider_uuid, {})[resource_class] = used
    return ConsumerAllocations(consumer_uuid, row.generation, row.project_id, row.user_id, held)


def read_consumers(conn: Connection, consumer_uuids: list[str]) -> list[ConsumerAllocations]:
    """Those of the consumers asked that hold something, in the order asked.

    One statement for all of them, not two per consumer: a scheduler asks for
    a whole server group's members at each decision."""
    rows = conn.execute(
        select(
            consumers.c.uuid,
            consumers.c.generation,
            consumers.c.project_id,
            consumers.c.user_id,
            _providers.c.uuid.label("provider_uuid"),
            allocations.c.resource_class,
            allocations.c.used,
        )
        .join(allocations, allocations.c.consumer_uuid == consumers.c.uuid)
        .join(_providers, _providers.c.id == allocations.c.provider_id)
        .where(in_ids(conn, consumers.c.uuid, consumer_uuids))
    )
    found: dict[str, ConsumerAllocations] = {}
    for row in rows:
        consumer = found.get(row.uuid)
        if consumer is None:
            consumer = ConsumerAllocations(row.uuid, row.generation, row.project_id, row.user_id)
            found[row.uuid] = consumer
        consumer.allocations.setdefault(row.provider_uuid, {})[row.resource_class] = row.used
    return [found[uuid] for uuid in consumer_uuids if uuid in found]
