"""placement: providers, inventories, traits, aggregates, consumers, allocations

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resource_providers",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), sa.ForeignKey("resource_providers.id"), nullable=True),
        sa.Column("root_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_resource_providers_parent_id", "resource_providers", ["parent_id"])
    op.create_index("ix_resource_providers_root_id", "resource_providers", ["root_id"])
    op.create_table(
        "inventories",
        sa.Column(
            "provider_id",
            sa.Integer(),
            sa.ForeignKey("resource_providers.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("resource_class", sa.String(255), primary_key=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("reserved", sa.Integer(), nullable=False),
        sa.Column("min_unit", sa.Integer(), nullable=False),
        sa.Column("max_unit", sa.Integer(), nullable=False),
        sa.Column("step_size", sa.Integer(), nullable=False),
        sa.Column("allocation_ratio", sa.Float(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
    )
    op.create_table("custom_resource_classes", sa.Column("name", sa.String(255), primary_key=True))
    op.create_table("custom_traits", sa.Column("name", sa.String(255), primary_key=True))
    op.create_table(
        "provider_traits",
        sa.Column(
            "provider_id",
            sa.Integer(),
            sa.ForeignKey("resource_providers.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("trait", sa.String(255), primary_key=True),
    )
    op.create_index("ix_provider_traits_trait", "provider_traits", ["trait"])
    op.create_table(
        "provider_aggregates",
        sa.Column(
            "provider_id",
            sa.Integer(),
            sa.ForeignKey("resource_providers.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("aggregate_uuid", sa.String(36), primary_key=True),
    )
    op.create_index(
        "ix_provider_aggregates_aggregate_uuid", "provider_aggregates", ["aggregate_uuid"]
    )
    op.create_table(
        "consumers",
        sa.Column("uuid", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
    )
    op.create_index("ix_consumers_project_id", "consumers", ["project_id"])
    op.create_table(
        "allocations",
        sa.Column(
            "consumer_uuid",
            sa.String(36),
            sa.ForeignKey("consumers.uuid", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "provider_id", sa.Integer(), sa.ForeignKey("resource_providers.id"), primary_key=True
        ),
        sa.Column("resource_class", sa.String(255), primary_key=True),
        sa.Column("used", sa.Integer(), nullable=False),
    )
    op.create_index("ix_allocations_provider_id", "allocations", ["provider_id"])


def downgrade() -> None:
    for table in (
        "allocations",
        "consumers",
        "provider_aggregates",
        "provider_traits",
        "custom_traits",
        "custom_resource_classes",
        "inventories",
        "resource_providers",
    ):
        op.drop_table(table)
