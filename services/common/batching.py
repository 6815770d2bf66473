"""Batching: calls that arrive together leave together.

Why: in Stratus most of the cost of a small write or an RPC is fixed per
transaction or per call (round trips, BEGIN and COMMIT, thread hops, the
Python around them), not per item: on this project's 2-core machine a
one-row SQLAlchemy transaction costs about 3 ms of CPU, a row more in the
same statement about 50 us. A Batcher queues items and hands whatever
queued while its earlier batches were out to one `send` call.

No timer: a lone item waits for nobody, and under load batches grow by
themselves. `concurrency` bounds the batches in flight, which also keeps a
burst from piling hundreds of calls onto a peer at once.

Each item keeps its own outcome: `send` returns one result per item, in
order, where an exception instance fails that item alone; if `send` raises,
every item of its batch fails with that error. An item once queued is sent
even if its caller stops waiting (a write whose reply was lost is written as
well; an idempotent retry is then answered with it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

Send = Callable[[list[T]], Awaitable[Sequence["R | BaseException"]]]


class Batcher(Generic[T, R]):
    def __init__(
        self,
        send: Send,
        *,
        max_batch: int,
        concurrency: int = 1,
        weight: Callable[[T], int] = lambda _: 1,
        distinct: Callable[[T], Hashable] | None = None,
    ) -> None:
        """`max_batch` bounds a batch's summed `weight` (a single heavier item
        still goes alone); items with equal `distinct` keys never share a batch."""
        self._send = send
        self._max_batch = max_batch
        self._concurrency = concurrency
        self._weight = weight
        self._distinct = distinct
        self._waiting: list[tuple[T, asyncio.Future]] = []
        self._senders: set[asyncio.Task] = set()  # held so they are not collected
        # Senders still looping. Counted down by the sender itself as it leaves
        # its loop, with no await in between: a task's done callbacks run a
        # loop step later, and an item submitted in that gap would find the
        # finished sender still counted and wait for nobody.
        self._sending = 0

    async def submit(self, item: T) -> R:
        """The item's outcome, once the batch it went in was sent."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._sending < self._concurrency:
            self._sending += 1
            # The sender runs in this caller's context (its request id goes along).
            sender = asyncio.create_task(self._send_waiting())
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        return await asyncio.shield(future)

    async def _send_waiting(self) -> None:
        try:
            await self._send_all_waiting()
        finally:
            self._sending -= 1

    async def _send_all_waiting(self) -> None:
        while self._waiting:
            batch = self._next_batch()
            try:
                outcomes = await self._send([item for item, _ in batch])
                if len(outcomes) != len(batch):
                    raise RuntimeError(f"send answered {len(outcomes)} of {len(batch)} items")
            except Exception as error:  # the whole batch failed
                outcomes = [error] * len(batch)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    def _next_batch(self) -> list[tuple[T, asyncio.Future]]:
        """The oldest waiting items up to max_batch (at least one), skipping any
        whose distinct key the batch holds already: they wait for the next."""
        batch: list[tuple[T, asyncio.Future]] = []
        later: list[tuple[T, asyncio.Future]] = []
        keys: set[Hashable] = set()
        total = 0
        for entry in self._waiting:
            item = entry[0]
            key = self._distinct(item) if self._distinct else None
            weight = self._weight(item)
            full = batch and total + weight > self._max_batch
            if full or (key is not None and key in keys):
                later.append(entry)
                continue
            batch.append(entry)
            total += weight
            if key is not None:
                keys.add(key)
        self._waiting = later
        return batch
