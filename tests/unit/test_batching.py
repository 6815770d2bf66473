"""A Batcher sends every item it accepts, one outcome per item, in batches."""

from __future__ import annotations

import asyncio

from services.common.batching import Batcher


class GatedSend:
    """A send that holds every batch until the gate opens, then doubles each
    item; it records the batches it was given."""

    def __init__(self) -> None:
        self.gate = asyncio.get_running_loop().create_future()
        self.sent: list[list] = []

    async def __call__(self, items: list) -> list:
        if not self.gate.done():
            await self.gate
        self.sent.append(items)
        return [item * 2 for item in items]


async def test_an_item_submitted_as_the_last_sender_finishes_is_still_sent():
    # The sender finishes its last batch and, in the same turn of the event
    # loop, another task submits. A sender counted until its done callback
    # ran (a turn later) left that item waiting for nobody: a build stuck in
    # "spawning" until the reconciler found it.
    send = GatedSend()
    go = asyncio.get_running_loop().create_future()
    batcher: Batcher[str, str] = Batcher(send, max_batch=10)
    first = asyncio.create_task(batcher.submit("a"))

    async def late() -> str:
        await go
        return await batcher.submit("b")

    second = asyncio.create_task(late())
    await asyncio.sleep(0)  # the sender is waiting at the gate
    # Both wake in the next turn: the sender first, then the late submitter.
    send.gate.set_result(None)
    go.set_result(None)

    assert await asyncio.wait_for(first, 2) == "aa"
    assert await asyncio.wait_for(second, 2) == "bb"
    assert send.sent == [["a"], ["b"]]


async def test_items_that_queue_while_a_batch_is_out_leave_together():
    send = GatedSend()
    batcher: Batcher[int, int] = Batcher(send, max_batch=3)
    calls = [asyncio.create_task(batcher.submit(0))]
    await asyncio.sleep(0)  # 0 is out, held at the gate
    calls += [asyncio.create_task(batcher.submit(n)) for n in range(1, 6)]
    await asyncio.sleep(0)
    send.gate.set_result(None)

    assert await asyncio.gather(*calls) == [0, 2, 4, 6, 8, 10]
    assert send.sent == [[0], [1, 2, 3], [4, 5]]


async def test_a_failed_item_fails_alone_and_a_failed_send_fails_its_batch():
    async def send(items: list[int]) -> list[int | BaseException]:
        if 0 in items:
            raise RuntimeError("the database went away")
        return [ValueError(f"bad {n}") if n < 0 else n for n in items]

    batcher: Batcher[int, int] = Batcher(send, max_batch=10)
    good, bad = await asyncio.gather(batcher.submit(1), batcher.submit(-1), return_exceptions=True)
    assert good == 1
    assert isinstance(bad, ValueError)

    results = await asyncio.gather(batcher.submit(0), return_exceptions=True)
    assert isinstance(results[0], RuntimeError)
