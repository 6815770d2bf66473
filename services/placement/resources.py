"""Amounts of resources: parsing requests and the one rule of what fits.

An amount n fits an inventory when
  used + n <= (total - reserved) * allocation_ratio,
  min_unit <= n <= max_unit, and n is a multiple of step_size.
The rule has three forms, all here, so that a candidate placement offers
is one a claim will accept: Python (Inventory.fits), a SQLAlchemy
expression (fits) and SQL text for statements built once (fits_sql).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, literal

from services.common.errors import FieldViolation, InvalidArgument

_AMOUNT = re.compile(r"^\s*([A-Z0-9_]+)\s*:\s*(\d{1,9})\s*$")


@dataclass(frozen=True, slots=True)
class Inventory:
    resource_class: str
    total: int
    reserved: int = 0
    min_unit: int = 1
    max_unit: int = 0
    step_size: int = 1
    allocation_ratio: float = 1.0
    used: int = 0

    @property
    def capacity(self) -> int:
        return int((self.total - self.reserved) * self.allocation_ratio)

    def fits(self, amount: int, already: int = 0) -> bool:
        return (
            self.used + already + amount <= (self.total - self.reserved) * self.allocation_ratio
            and self.min_unit <= amount <= self.max_unit
            and amount % self.step_size == 0
        )


def fits(table, amount: int) -> ColumnElement[bool]:
    """SQL form of Inventory.fits for the inventory columns of `table`."""
    return and_(
        table.used + amount <= (table.total - table.reserved) * table.allocation_ratio,
        table.min_unit <= amount,
        table.max_unit >= amount,
        literal(amount) % table.step_size == 0,
    )


def fits_sql(table: str, amount: str) -> str:
    """SQL text form of Inventory.fits, for `table`'s inventory columns and
    the SQL expression `amount`."""
    return f"{room_sql(table, amount)} AND {unit_sql(table, amount)}"


def room_sql(table: str, amount: str) -> str:
    """The capacity half of fits_sql: `table`'s inventory has room for `amount` more."""
    capacity = f"({table}.total - {table}.reserved) * {table}.allocation_ratio"
    return f"{table}.used + {amount} <= {capacity}"


def unit_sql(table: str, amount: str) -> str:
    """The other half: `amount` is a unit `table`'s inventory hands out."""
    return (
        f"{table}.min_unit <= {amount} AND {table}.max_unit >= {amount} "
        f"AND {amount} % {table}.step_size = 0"
    )


def parse_resources(text: str, field: str) -> dict[str, int]:
    """Parse "VCPU:2,MEMORY_MB:1024" (the form OpenStack users know)."""
    if not text.strip():
        return {}
    amounts: dict[str, int] = {}
    for part in text.split(","):
        match = _AMOUNT.match(part)
        if not match or int(match.group(2)) < 1:
            raise InvalidArgument(
                f"{field}: {part.strip()!r} is not CLASS:AMOUNT with an amount of at least 1",
                code="placement.invalid_resources",
                field_violations=(
                    FieldViolation(field, "expected CLASS:AMOUNT[,CLASS:AMOUNT...]"),
                ),
            )
        name, amount = match.group(1), int(match.group(2))
        if name in amounts:
            raise InvalidArgument(
                f"{field}: {name} appears twice", code="placement.invalid_resources"
            )
        amounts[name] = amount
    return amounts
