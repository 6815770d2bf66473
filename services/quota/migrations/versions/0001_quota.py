"""quota: project limits, claims, usages

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
        "project_limits",
        sa.Column("project_id", sa.String(255), primary_key=True),
        sa.Column("resource", sa.String(64), primary_key=True),
        sa.Column("hard_limit", sa.Integer(), nullable=False),
    )
    op.create_table(
        "claims",
        sa.Column("consumer_id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("server_group_id", sa.String(36), nullable=False),
        sa.Column("amounts", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "usages",
        sa.Column("project_id", sa.String(255), primary_key=True),
        sa.Column("resource", sa.String(64), primary_key=True),
        sa.Column("scope", sa.String(36), primary_key=True),
        sa.Column("used", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("usages")
    op.drop_table("claims")
    op.drop_table("project_limits")
