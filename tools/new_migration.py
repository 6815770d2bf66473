"""Write a new Alembic revision for one service's schema.

    python tools/new_migration.py api_gateway "add servers"

Applies the existing revisions to a scratch SQLite database, compares it
with the service's models and writes versions/NNNN_<slug>.py with the
difference. Review the file before committing: autogenerate is a draft.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config

from services.common.db import Database, resolve_url

ROOT = Path(__file__).resolve().parent.parent


def _revise(connection, migrations: Path, message: str) -> None:
    existing = sorted(
        p.name[:4] for p in (migrations / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")
    )
    rev_id = f"{int(existing[-1]) + 1 if existing else 1:04d}"
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    command.revision(config, message=message, autogenerate=True, rev_id=rev_id)


async def main(service: str, message: str) -> None:
    migrations = ROOT / "services" / service / "migrations"
    if not migrations.is_dir():
        raise SystemExit(f"{service} has no migrations folder at {migrations}")
    with tempfile.TemporaryDirectory() as scratch:
        db = Database(resolve_url("", Path(scratch), service))
        try:
            await db.migrate(migrations)
            async with db.engine.connect() as conn:
                await conn.run_sync(_revise, migrations, message)
        finally:
            await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service")
    parser.add_argument("message")
    args = parser.parse_args()
    if not re.fullmatch(r"[a-z_]+", args.service):
        raise SystemExit("service is a folder name under services/, e.g. api_gateway")
    asyncio.run(main(args.service, args.message))
