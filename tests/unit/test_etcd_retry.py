"""An etcd retry loop ends when its task is cancelled, even when the
cancellation comes out of the etcd client as an ordinary client error.

No etcd here: the attempt stands in for an aetcd call that turns the
cancellation into aetcd.ClientError, as a cancelled gRPC call can; that
swallowed cancellation is what this guards against (a service's stop hung
until it was killed)."""

from __future__ import annotations

import asyncio

import aetcd
import pytest

from services.common.etcd_client import EtcdConnection


class _Retried(BaseException):
    pass


async def test_a_cancelled_retry_loop_stops_even_if_the_client_swallowed_the_cancel():
    conn = EtcdConnection("127.0.0.1:1", purpose="test", max_backoff=0.05)
    attempts = 0

    async def attempt() -> None:
        nonlocal attempts
        attempts += 1
        if attempts > 1:  # the loop went on: end it, so a failing test does not hang
            raise _Retried
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            raise aetcd.ClientError("stream removed") from None

    async def on_failure() -> None:
        pass

    loop = asyncio.create_task(conn.retry_forever(attempt, on_failure))
    await asyncio.sleep(0.05)  # the first attempt is waiting
    loop.cancel()
    await asyncio.wait({loop}, timeout=2)
    assert loop.cancelled(), "the loop went on after it was cancelled"
    assert attempts == 1


async def test_an_outage_is_retried_until_it_ends():
    conn = EtcdConnection("127.0.0.1:1", purpose="test", max_backoff=0.01)
    outcomes = [aetcd.ClientError("down"), aetcd.ClientError("down"), None]
    done = asyncio.Event()
    failures = 0

    async def attempt() -> None:
        outcome = outcomes.pop(0) if outcomes else None
        if outcome is not None:
            raise outcome
        done.set()
        await asyncio.sleep(10)

    async def on_failure() -> None:
        nonlocal failures
        failures += 1

    loop = asyncio.create_task(conn.retry_forever(attempt, on_failure))
    await asyncio.wait_for(done.wait(), 2)
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    assert failures == 2
