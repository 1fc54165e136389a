"""``runner.cancel_tasks``: a stopping service's tasks end even when a library swallows
a cancellation (nats-py's ``_flush_pending`` does: ``except asyncio.CancelledError: pass``)."""

from __future__ import annotations

import asyncio

from services.common.runner import cancel_tasks


async def swallows_once(started: asyncio.Event) -> None:
    """What a KV watch cancelled inside nats-py's subscribe does: the first cancellation
    is eaten, and the task goes on to wait on its next future."""
    started.set()
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        pass  # the library's swallow
    await asyncio.Event().wait()  # the next await: nothing will ever set it


async def test_a_task_that_swallows_its_cancellation_still_ends():
    started = asyncio.Event()
    task = asyncio.create_task(swallows_once(started))
    await started.wait()
    left = await asyncio.wait_for(cancel_tasks([task]), 2.0)
    assert left == [] and task.cancelled()


async def test_gather_alone_would_wait_for_ever_on_it():
    # the fault cancel_tasks exists for: one cancel and a gather never return
    started = asyncio.Event()
    task = asyncio.create_task(swallows_once(started))
    await started.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.3)
    assert not done
    await cancel_tasks([task])


async def test_a_task_that_never_ends_is_returned_after_the_limit():
    release = asyncio.Event()

    async def stubborn() -> None:  # eats every cancellation until released
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    left = await cancel_tasks([task], limit_s=0.3)
    assert left == [task] and not task.done()
    release.set()
    assert await cancel_tasks([task], limit_s=1.0) == [] and task.done()
