"""servers, server_actions: room in each page for updated rows (fillfactor)

A booting server's record is updated as it goes ACTIVE (status, task and
power state: no indexed column) and its create action is closed; both can
be HOT updates when their page has room.

PostgreSQL only (services/common/migration_ops.py: set_fillfactor).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from services.common.migration_ops import reset_fillfactor, set_fillfactor

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

FILLFACTOR = {"servers": 80, "server_actions": 80}


def upgrade() -> None:
    set_fillfactor(FILLFACTOR)


def downgrade() -> None:
    reset_fillfactor(list(FILLFACTOR))
