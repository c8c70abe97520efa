"""The operator's lease keeper may be cancelled by kopf's shutdown: that is an end, not a crash
(a leader stopped by SIGTERM exits 0 and releases its lease); a real failure still surfaces."""

from __future__ import annotations

import asyncio

import pytest
from learnops_operator.cli import ended


async def _forever() -> None:
    await asyncio.Event().wait()


async def _fails() -> None:
    raise ValueError("the keeper broke")


def test_a_side_task_cancelled_by_someone_else_counts_as_ended() -> None:
    async def scenario() -> bool:
        task = asyncio.create_task(_forever())
        await asyncio.sleep(0)
        task.cancel()  # as kopf does to the loop's leftover tasks at its shutdown
        await ended(task)
        return task.cancelled()

    assert asyncio.run(scenario()) is True


def test_a_side_task_that_failed_raises_its_error() -> None:
    async def scenario() -> None:
        await ended(asyncio.create_task(_fails()))

    with pytest.raises(ValueError, match="the keeper broke"):
        asyncio.run(scenario())


def test_the_waiter_being_cancelled_is_not_swallowed() -> None:
    async def scenario() -> None:
        keeper = asyncio.create_task(_forever())
        waiter = asyncio.create_task(ended(keeper))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert not keeper.done()  # the waiter's cancellation is its own, not the keeper's
        keeper.cancel()

    asyncio.run(scenario())
