"""servers: index on provider_uuid

The reconciler reads the servers on a page of providers each pass
(ServerRecords.on_providers); without the index that read scanned the
whole servers table, deleted servers included.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 07:30:00
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_servers_provider", "servers", ["provider_uuid"])


def downgrade() -> None:
    op.drop_index("ix_servers_provider", table_name="servers")
