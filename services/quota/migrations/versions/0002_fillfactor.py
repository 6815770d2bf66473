"""quota: room in each page for updated usage rows (fillfactor)

Every claim and release adds to its project's usage rows, the hottest rows
of quota's database.

PostgreSQL only (services/common/migration_ops.py: set_fillfactor).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from services.common.migration_ops import reset_fillfactor, set_fillfactor

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FILLFACTOR = {"usages": 70}


def upgrade() -> None:
    set_fillfactor(FILLFACTOR)


def downgrade() -> None:
    reset_fillfactor(list(FILLFACTOR))
