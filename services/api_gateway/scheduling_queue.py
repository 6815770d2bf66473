"""Builds waiting to be scheduled, sent to the scheduler together.

Why: every scheduler call costs a candidates query in placement, a claim
transaction and the RPCs around them, whatever its size; concurrent single
creates each paid all of it. Builds that arrive while `concurrency` calls
are in flight queue here and leave in one BatchSelectDestinations call,
where the scheduler shares one candidates query per distinct resource
request and claims them in one batch. Each build keeps its own request and
its own outcome: one that finds no host fails alone.

No timer: a batch is whatever queued while the earlier calls were out, so
a lone build waits for nobody, and under load batches grow by themselves.
The bound on calls in flight also keeps a burst from piling hundreds of
decisions onto placement at once (each slower than the last, until they
time out).
"""

from __future__ import annotations

import asyncio

from stratus.scheduler.v1 import scheduler_pb2 as sched_pb

from services.api_gateway.peers import Scheduler

# Instances per call: bounds the time one call holds its builds.
MAX_INSTANCES = 200

_Waiting = tuple[sched_pb.SelectDestinationsRequest, asyncio.Future]


class SchedulingQueue:
    def __init__(self, scheduler: Scheduler, concurrency: int) -> None:
        self._scheduler = scheduler
        self._concurrency = concurrency
        self._waiting: list[_Waiting] = []
        self._senders: set[asyncio.Task] = set()

    async def select(
        self, request: sched_pb.SelectDestinationsRequest
    ) -> sched_pb.SelectDestinationsResponse:
        """The request's selections, or its error raised as a StratusError."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((request, future))
        if len(self._senders) < self._concurrency:
            # The sender runs in this build's context (its request id goes along).
            sender = asyncio.create_task(self._send_waiting())
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        return await future

    async def _send_waiting(self) -> None:
        while self._waiting:
            batch = self._next_batch()
            try:
                outcomes = await self._scheduler.select_many([r for r, _ in batch])
            except Exception as error:  # the call failed, for every build in it
                outcomes = [error] * len(batch)
            for (_, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # its build was cancelled (shutdown)
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    def _next_batch(self) -> list[_Waiting]:
        """The oldest waiting requests, up to MAX_INSTANCES instances (at least one)."""
        taken, instances = 0, 0
        for request, _ in self._waiting:
            instances += len(request.instance_ids)
            if taken and instances > MAX_INSTANCES:
                break
            taken += 1
        batch, self._waiting = self._waiting[:taken], self._waiting[taken:]
        return batch
