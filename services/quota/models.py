"""quota's tables. Only quota reads or writes them.

``usages.used`` is the sum of the live claims' amounts of one resource in
one scope, kept in the same transaction as the claim rows. It lets a claim
be one conditional UPDATE per resource (``used + n <= limit``), atomic on
every database, and its row lock is what makes racing claims queue.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class ProjectLimitRow(Base):
    """A limit an admin set for a project; resources without one use the default."""

    __tablename__ = "project_limits"

    project_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    resource: Mapped[str] = mapped_column(String(64), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)


class ClaimRow(Base):
    """What one consumer holds: the idempotency record of its claim."""

    __tablename__ = "claims"

    consumer_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255))
    server_group_id: Mapped[str] = mapped_column(String(36))
    amounts: Mapped[dict[str, int]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class UsageRow(Base):
    """Usage of one resource in one scope of a project. The scope is "" for
    project-wide resources and the server group id for server_group_members."""

    __tablename__ = "usages"

    project_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    resource: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(String(36), primary_key=True)
    used: Mapped[int] = mapped_column(Integer)
