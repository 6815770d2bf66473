"""Group commit: claims and releases that arrive together share one write
transaction.

Why: a claim is a handful of short statements, and per claim most of the
time went to the round trips, BEGIN/COMMIT and the Python around them, not
to the database's work (SQLite also admits one writer at a time). Written
together, the claims of a batch cost the statements of one claim: one
INSERT of the new consumers, one UPDATE of the providers' generations, one
conditional UPDATE of the inventories, one INSERT of the allocations.
Releases (a server deleted) ride in the same batches: a release is an
empty claim at the consumer's current generation, and a batch of them
costs two more statements, not seven per consumer.

Batches form as in services/common/batching.py: whatever arrived while the
previous one was being written.

Each claim keeps its own outcome. The batch is first tried whole, as one
net change in one transaction (allocation_writes.write_all); that is exact
because every consumer of a batch is distinct and taking amounts only ever
adds usage (a release only frees some), so if the sum fits, every claim
fits in some serial order. If
any claim is refused (no room, a stale consumer generation, an unknown
provider, or a deadlock against another replica), that transaction rolls
back and the claims are written again one by one in a second transaction,
each in a savepoint of its own: a refused claim fails alone and the others
land in the same commit. Contention is rare with many hosts, so the common
batch costs one transaction and no savepoints. If the second transaction
fails as a whole (the database is gone), every claim of the batch gets that
error, retryable as before.

On PostgreSQL a batch of claims for new consumers, or of releases, is
first tried as one statement in autocommit (one_statement.py); if it falls
short, it keeps nothing and the batch goes on as above.
"""

from __future__ import annotations

from functools import partial

from sqlalchemy.engine import Connection

from services.common.batching import Batcher
from services.common.db import Database
from services.common.errors import StratusError
from services.placement.allocation_writes import Written, write_all
from services.placement.capacity_index.state import ProviderIndex
from services.placement.consumers import ConsumerAllocations, PutAllocations, Release
from services.placement.one_statement import FellShort, one_statement_writer

# Claims per transaction: bounds a transaction's statements and lock time.
MAX_BATCH = 64

Write = PutAllocations | Release
Outcome = ConsumerAllocations | StratusError


class GroupCommit:
    def __init__(self, db: Database, index: ProviderIndex) -> None:
        self._db = db
        self._index = index
        # One writer: a second transaction would only queue on the write lock.
        # One claim per consumer per batch: a second (a retry racing its
        # original) waits for the next.
        self._batcher: Batcher[Write, ConsumerAllocations] = Batcher(
            self._commit, max_batch=MAX_BATCH, distinct=lambda r: r.consumer_uuid
        )

    async def write(self, request: Write) -> ConsumerAllocations:
        return await self._batcher.submit(request)

    async def _commit(self, requests: list[Write]) -> list[Outcome]:
        """The batch as one net change; if any claim is refused, one by one."""
        try:
            return list(await write_together(self._db, self._index, requests))
        except StratusError:
            if len(requests) == 1:
                raise  # its own outcome
        return await _written(self._index, requests, partial(self._db.run_write, _one_by_one))


async def write_together(
    db: Database, index: ProviderIndex, requests: list[Write]
) -> list[ConsumerAllocations]:
    """The requests as one net change in one transaction, all or nothing;
    raises the first refusal."""
    writer = one_statement_writer(db.engine.dialect.name, requests)
    if writer is not None:
        try:
            return await _written(index, requests, partial(writer, db))
        except FellShort:
            pass  # written again by write_all, which says what was refused
    return await _written(index, requests, partial(db.run_write, write_all))


async def _written(index: ProviderIndex, requests: list[Write], write):
    """`await write(requests, written)`; what it wrote goes to the index once
    it is committed."""
    written = Written()
    outcomes = await write(requests, written)
    written.apply_to(index)
    return outcomes


def _one_by_one(conn: Connection, requests: list[Write], written: Written) -> list[Outcome]:
    """Each claim in a savepoint of its own: a refused one is rolled back alone."""
    outcomes: list[Outcome] = []
    for request in requests:
        alone = Written()
        try:
            with conn.begin_nested():
                outcomes += write_all(conn, [request], alone)
            written.add(alone)
        except StratusError as refused:
            outcomes.append(refused)
    return outcomes
