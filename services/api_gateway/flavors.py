"""Flavors: the sizes servers are built with.

Rules: admins create and delete; everyone lists and reads public flavors,
admins also private ones (another project's view of a private flavor is
"not found", not "forbidden"). Names are unique; the database's unique
constraint decides a race between two creates of the same name.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from services.api_gateway.models import FlavorRow
from services.common import pagination
from services.common.context import RequestContext
from services.common.db import Database
from services.common.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound

_flavors = FlavorRow.__table__

# How long a flavor found by find() is used without reading it again.
FOUND_TTL_S = 2.0
TRAIT_PREFIX = "trait:"
# "resources:CUSTOM_BAREMETAL_GOLD": "1" asks placement for that class too;
# "resources:VCPU": "0" drops a standard one (a whole bare-metal machine has
# no VCPU inventory to give), as Nova's flavors do.
RESOURCES_PREFIX = "resources:"
TRAIT_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,254}$")
TRAIT_POLICIES = ("required", "forbidden")


@dataclass(frozen=True)
class NewFlavor:
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int = 0
    extra_specs: dict[str, str] = field(default_factory=dict)
    is_public: bool = True


@dataclass(frozen=True, kw_only=True)
class Flavor:
    id: str
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    extra_specs: dict[str, str]
    is_public: bool
    created_at: datetime

    @property
    def resources(self) -> dict[str, int]:
        """What placement must give one server of this flavor."""
        wanted = {"VCPU": self.vcpus, "MEMORY_MB": self.ram_mb, "DISK_GB": self.disk_gb}
        for key, value in self.extra_specs.items():
            if key.startswith(RESOURCES_PREFIX):
                wanted[key.removeprefix(RESOURCES_PREFIX)] = int(value)
        return {rc: amount for rc, amount in wanted.items() if amount > 0}

    @property
    def required_traits(self) -> frozenset[str]:
        return self._traits("required")

    @property
    def forbidden_traits(self) -> frozenset[str]:
        return self._traits("forbidden")

    def _traits(self, policy: str) -> frozenset[str]:
        return frozenset(
            key.removeprefix(TRAIT_PREFIX)
            for key, value in self.extra_specs.items()
            if key.startswith(TRAIT_PREFIX) and value == policy
        )


def check_extra_specs(extra_specs: dict[str, str]) -> None:
    """Validate the namespaced keys Stratus acts on; other keys are free-form."""
    violations = []
    for key, value in sorted(extra_specs.items()):
        where = f"flavor.extra_specs[{key!r}]"
        if key.startswith(RESOURCES_PREFIX):
            if not TRAIT_NAME.match(key.removeprefix(RESOURCES_PREFIX)):
                violations.append(
                    FieldViolation(where, "resource classes are upper case letters, digits and _")
                )
            if not value.isdigit():
                violations.append(FieldViolation(where, f"must be a whole number, not {value!r}"))
            continue
        if not key.startswith(TRAIT_PREFIX):
            continue
        if not TRAIT_NAME.match(key.removeprefix(TRAIT_PREFIX)):
            violations.append(
                FieldViolation(where, "trait names are upper case letters, digits and _")
            )
        if value not in TRAIT_POLICIES:
            violations.append(
                FieldViolation(where, f"must be 'required' or 'forbidden', not {value!r}")
            )
    if violations:
        raise InvalidArgument(
            "; ".join(f"{v.field}: {v.description}" for v in violations),
            code="stratus.invalid_field",
            field_violations=tuple(violations),
        )


def _from_row(row) -> Flavor:
    """From an ORM row or a Core row of the flavors table."""
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return Flavor(
        id=row.id,
        name=row.name,
        vcpus=row.vcpus,
        ram_mb=row.ram_mb,
        disk_gb=row.disk_gb,
        extra_specs=dict(row.extra_specs),
        is_public=row.is_public,
        created_at=created,
    )


def _read_flavors(conn: Connection, query) -> list[Flavor]:
    return [_from_row(row) for row in conn.execute(query)]


def _flavor_by_id_or_name(conn: Connection, id_or_name: str) -> Flavor | None:
    row = conn.execute(select(_flavors).where(_flavors.c.id == id_or_name)).first()
    if row is None:
        row = conn.execute(select(_flavors).where(_flavors.c.name == id_or_name)).first()
    return _from_row(row) if row is not None else None


class Flavors:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._found: dict[str, tuple[float, Flavor]] = {}  # id or name -> (until, flavor)

    async def create(self, ctx: RequestContext, new: NewFlavor) -> Flavor:
        ctx.require_admin("creating a flavor")
        check_extra_specs(new.extra_specs)
        row = FlavorRow(
            id=str(uuid.uuid4()),
            name=new.name,
            vcpus=new.vcpus,
            ram_mb=new.ram_mb,
            disk_gb=new.disk_gb,
            extra_specs=dict(new.extra_specs),
            is_public=new.is_public,
            created_at=datetime.now(UTC),
        )
        try:
            async with self._db.transaction() as session:
                session.add(row)
        except IntegrityError as exc:
            raise AlreadyExists(
                f"a flavor named {new.name!r} already exists; choose another name",
                code="compute.flavor_exists",
            ) from exc
        return _from_row(row)

    async def get(self, ctx: RequestContext, flavor_id: str) -> Flavor:
        found = await self._db.run_read(
            _read_flavors, select(_flavors).where(_flavors.c.id == flavor_id)
        )
        if not found or not (found[0].is_public or ctx.is_admin):
            raise NotFound(f"flavor {flavor_id} does not exist", code="compute.flavor_not_found")
        return found[0]

    async def find(self, ctx: RequestContext, id_or_name: str) -> Flavor:
        """A flavor by id or, failing that, by name (what users type).

        Every create asks, and a read transaction costs more than the rest of
        admitting a server, so flavors found are remembered for FOUND_TTL_S.
        Flavors never change; a deleted one may still be used for that long
        by a replica other than the one that deleted it."""
        found = self._found.get(id_or_name)
        if found is None or found[0] < time.monotonic():
            found = (time.monotonic() + FOUND_TTL_S, await self._read(id_or_name))
            if found[1] is not None:
                self._found[id_or_name] = found
        flavor = found[1]
        if flavor is None or not (flavor.is_public or ctx.is_admin):
            raise NotFound(
                f"flavor {id_or_name!r} does not exist; `GET /v1/flavors` lists them",
                code="compute.flavor_not_found",
            )
        return flavor

    async def _read(self, id_or_name: str) -> Flavor | None:
        return await self._db.run_read(_flavor_by_id_or_name, id_or_name)

    async def list(
        self, ctx: RequestContext, page_size: int, page_token: str
    ) -> tuple[list[Flavor], str]:
        """One page of flavors ordered by name, and the token of the next page."""
        size = pagination.page_size(page_size)
        after = pagination.decode_token(page_token, arity=1)
        query = select(_flavors).order_by(_flavors.c.name).limit(size + 1)
        if after is not None:
            query = query.where(_flavors.c.name > after[0])
        if not ctx.is_admin:
            query = query.where(_flavors.c.is_public.is_(True))
        flavors = await self._db.run_read(_read_flavors, query)
        page = flavors[:size]
        next_token = pagination.encode_token([page[-1].name]) if len(flavors) > size else ""
        return page, next_token

    async def delete(self, ctx: RequestContext, flavor_id: str) -> None:
        ctx.require_admin("deleting a flavor")
        async with self._db.transaction() as session:
            result = await session.execute(delete(FlavorRow).where(FlavorRow.id == flavor_id))
        self._found.clear()
        if result.rowcount == 0:
            raise NotFound(f"flavor {flavor_id} does not exist", code="compute.flavor_not_found")
