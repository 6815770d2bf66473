"""Shared body of every service's Alembic env.py.

Migrations run on the connection the service hands over (see db.migrate).
SQLite needs batch mode to alter tables, so it is always on.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import MetaData


def run_migrations(target_metadata: MetaData) -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise SystemExit(
            "migrations apply when the service starts; to write a new one use "
            "`python tools/new_migration.py SERVICE MESSAGE`"
        )
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
