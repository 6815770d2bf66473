"""Schema operations the services' migrations share."""

from __future__ import annotations

from alembic import op


def set_fillfactor(fillfactor: dict[str, int]) -> None:
    """Leave room in each page of these tables (table -> percent filled).

    PostgreSQL only: an UPDATE that changes no indexed column is a HOT update
    (no new index entries, the old version pruned in place) only if the row's
    page has room for the new version; at the default fillfactor of 100 the
    pages are full. SET (fillfactor) takes a lock that does not block reads
    or writes; rows written from then on get the room (a table rewrite, such
    as VACUUM FULL, gives it to the existing ones as well).
    """
    if op.get_bind().dialect.name == "postgresql":
        for table, percent in fillfactor.items():
            op.execute(f"ALTER TABLE {table} SET (fillfactor = {percent})")


def reset_fillfactor(tables: list[str]) -> None:
    """Back to PostgreSQL's default fillfactor (set_fillfactor's downgrade)."""
    if op.get_bind().dialect.name == "postgresql":
        for table in tables:
            op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
