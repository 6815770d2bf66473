"""placement's tables. Only placement reads or writes them.

``inventories.used`` is the sum of the allocations against that inventory,
kept in the same transaction as the allocation rows. It lets a claim be one
conditional UPDATE per inventory (``used + n <= capacity``), which is atomic
on every database without holding locks across round trips.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Float, ForeignKey, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class ProviderRow(Base):
    __tablename__ = "resource_providers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    generation: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("resource_providers.id"), index=True)
    root_id: Mapped[int] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class InventoryRow(Base):
    __tablename__ = "inventories"

    provider_id: Mapped[int] = mapped_column(
        ForeignKey("resource_providers.id", ondelete="CASCADE"), primary_key=True
    )
    resource_class: Mapped[str] = mapped_column(String(255), primary_key=True)
    total: Mapped[int] = mapped_column(Integer)
    reserved: Mapped[int] = mapped_column(Integer)
    min_unit: Mapped[int] = mapped_column(Integer)
    max_unit: Mapped[int] = mapped_column(Integer)
    step_size: Mapped[int] = mapped_column(Integer)
    allocation_ratio: Mapped[float] = mapped_column(Float)
    used: Mapped[int] = mapped_column(Integer)
    # No index on resource_class alone: without statistics SQLite would drive
    # candidate queries from it and scan every row of a class per tree. The
    # primary key (provider_id, resource_class) is the lookup that scales.


class CustomResourceClassRow(Base):
    __tablename__ = "custom_resource_classes"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)


class CustomTraitRow(Base):
    __tablename__ = "custom_traits"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)


class ProviderTraitRow(Base):
    __tablename__ = "provider_traits"

    provider_id: Mapped[int] = mapped_column(
        ForeignKey("resource_providers.id", ondelete="CASCADE"), primary_key=True
    )
    trait: Mapped[str] = mapped_column(String(255), primary_key=True, index=True)


class ProviderAggregateRow(Base):
    __tablename__ = "provider_aggregates"

    provider_id: Mapped[int] = mapped_column(
        ForeignKey("resource_providers.id", ondelete="CASCADE"), primary_key=True
    )
    aggregate_uuid: Mapped[str] = mapped_column(String(36), primary_key=True, index=True)


class ConsumerRow(Base):
    __tablename__ = "consumers"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    user_id: Mapped[str] = mapped_column(String(255))
    generation: Mapped[int] = mapped_column(Integer)


class AllocationRow(Base):
    __tablename__ = "allocations"

    consumer_uuid: Mapped[str] = mapped_column(
        ForeignKey("consumers.uuid", ondelete="CASCADE"), primary_key=True
    )
    provider_id: Mapped[int] = mapped_column(
        ForeignKey("resource_providers.id"), primary_key=True, index=True
    )
    resource_class: Mapped[str] = mapped_column(String(255), primary_key=True)
    used: Mapped[int] = mapped_column(Integer)
