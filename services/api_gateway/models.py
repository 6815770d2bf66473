"""api_gateway's tables. Only api_gateway reads or writes them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class FlavorRow(Base):
    __tablename__ = "flavors"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    ram_mb: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer)
    extra_specs: Mapped[dict[str, str]] = mapped_column(JSON)
    is_public: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ServerRow(Base):
    __tablename__ = "servers"
    __table_args__ = (
        Index("ix_servers_project_created", "project_id", "created_at"),
        Index("ix_servers_host", "host"),
        Index("ix_servers_server_group", "server_group_id"),
        Index("ix_servers_provider", "provider_uuid"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(String(255))
    flavor_id: Mapped[str] = mapped_column(String(36))
    flavor_name: Mapped[str] = mapped_column(String(255))
    vcpus: Mapped[int] = mapped_column(Integer)
    ram_mb: Mapped[int] = mapped_column(Integer)
    disk_gb: Mapped[int] = mapped_column(Integer)
    # What placement must give the server (the flavor's sizes and "resources:" specs).
    resources: Mapped[dict[str, int]] = mapped_column(JSON, server_default=text("'{}'"))
    # Scheduling hints from the flavor's extra specs, kept for rescheduling.
    required_traits: Mapped[list[str]] = mapped_column(JSON)
    forbidden_traits: Mapped[list[str]] = mapped_column(JSON)
    image_ref: Mapped[str] = mapped_column(String(255))
    key_name: Mapped[str] = mapped_column(String(255))
    availability_zone: Mapped[str] = mapped_column(String(255))
    server_group_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # Copied from the group at create: the group may not change under a server.
    server_group_policy: Mapped[str] = mapped_column(String(32))
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSON)
    user_data: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    # The step in progress; "" when none. Stored so a crash can be resumed.
    task_state: Mapped[str] = mapped_column(String(32))
    power_state: Mapped[str] = mapped_column(String(16))
    host: Mapped[str] = mapped_column(String(255))
    host_address: Mapped[str] = mapped_column(String(255))
    provider_uuid: Mapped[str] = mapped_column(String(36))
    # Where a failed spawn may move: the scheduler's alternates, ready to claim.
    alternates: Mapped[list[dict]] = mapped_column(JSON)
    fault_code: Mapped[str] = mapped_column(String(255))
    fault_message: Mapped[str] = mapped_column(Text)
    fault_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ServerActionRow(Base):
    __tablename__ = "server_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    server_id: Mapped[str] = mapped_column(String(36), index=True)
    action: Mapped[str] = mapped_column(String(32))
    request_id: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str] = mapped_column(String(255))
    project_id: Mapped[str] = mapped_column(String(255))
    start_time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finish_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    result: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)


class KeyPairRow(Base):
    __tablename__ = "key_pairs"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_key_pairs_project_name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ServerGroupRow(Base):
    __tablename__ = "server_groups"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255), index=True)
    name: Mapped[str] = mapped_column(String(255))
    policy: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
