"""quota: room in each page for updated usage rows (fillfactor)

Every claim and release adds to its project's usage rows, the hottest rows
of quota's database.

PostgreSQL only: an UPDATE that changes no indexed column is a HOT update
(no new index entries, the old version pruned in place) only if the row's
page has room for the new version; at the default fillfactor of 100 the
pages are full. SET (fillfactor) takes a lock that does not block reads or
writes; rows written from now on get the room (a table rewrite, such as
VACUUM FULL, gives it to the existing ones as well).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FILLFACTOR = {"usages": 70}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in FILLFACTOR:
            op.execute(f"ALTER TABLE {table} SET (fillfactor = {FILLFACTOR[table]})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in FILLFACTOR:
            op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
