"""Planner statistics for a service's tables where PostgreSQL's autovacuum is off.

Why: without statistics PostgreSQL guesses how many rows a join finds, and
for a join on part of a key (allocations by consumer) it guessed thousands
where there are three, and scanned whole tables. A batch of 34 placement
releases at 10,000 providers took 42 ms that way, and 4.5 ms once its
tables had been analyzed. autovacuum, on by default, keeps statistics by
itself; a server with it off (as on this project's test machines) never
gets any. There, each service analyzes its own tables by autovacuum's
rule: a table with more than 50 rows plus a tenth of its size changed since
it was last analyzed. With autovacuum on, this does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

CHECK_EVERY_S = 10.0
# autovacuum_analyze_threshold and autovacuum_analyze_scale_factor's defaults.
_STALE = text(
    "SELECT s.relname FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid"
    " WHERE s.schemaname = current_schema()"
    " AND s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0)"
    " ORDER BY s.relname"
)


class TableStatistics:
    def __init__(self, engine: AsyncEngine, interval_s: float = CHECK_EVERY_S) -> None:
        self._engine = engine
        self._interval_s = interval_s
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Keep the statistics from now on, where it falls to this service."""
        if self._engine.dialect.name == "postgresql":
            self._task = asyncio.create_task(self._forever(), name="table-statistics")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def analyze_stale(self) -> list[str]:
        """ANALYZE every table of this database's schema changed enough since
        its last analysis; the tables analyzed."""
        async with self._engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            stale = list(await conn.scalars(_STALE))
            for table in stale:
                await conn.execute(text(f'ANALYZE "{table}"'))
        return stale

    async def autovacuum_is_on(self) -> bool:
        async with self._engine.connect() as conn:
            return await conn.scalar(text("SELECT current_setting('autovacuum')")) == "on"

    async def _forever(self) -> None:
        # autovacuum is a server setting: asked once, until an answer comes.
        autovacuum: bool | None = None
        while True:
            try:
                if autovacuum is None:
                    autovacuum = await self.autovacuum_is_on()
                    if autovacuum:
                        return
                    log.info(
                        "PostgreSQL's autovacuum is off: this service analyzes its own "
                        "tables where autovacuum would (checked every %.0f s)",
                        self._interval_s,
                    )
                await self.analyze_stale()
            except Exception:  # the database is down, or a table is not ours
                log.warning("analyzing tables failed; trying again", exc_info=True)
            await asyncio.sleep(self._interval_s)
