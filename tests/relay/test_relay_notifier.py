"""The relay's wake-ups: a change stored while a reader reads is never missed, and the
poll wakes a reader without a timer per wait."""

from __future__ import annotations

import asyncio

from sealwire_relay._service import Notifier, Poll, wait_any


async def test_a_change_between_read_and_wait_wakes_the_reader() -> None:
    notifier = Notifier()
    with notifier.watching("box") as changed:
        changed.clear()
        notifier.notify("box")  # stored while the reader was reading
        loop = asyncio.get_running_loop()
        started = loop.time()
        await wait_any([changed], timeout=30)
        assert loop.time() - started < 10  # woken by the change, not by the 30 s poll


async def test_every_watcher_is_woken_and_forgotten_after() -> None:
    notifier = Notifier()
    with notifier.watching("g") as first, notifier.watching("g") as second:
        notifier.notify("g")
        notifier.notify("other")
        assert first.is_set() and second.is_set()
    assert notifier._watchers == {}  # nothing kept for a key nobody watches


async def test_wait_any_returns_on_the_poll_and_leaves_no_task() -> None:
    before = len(asyncio.all_tasks())
    await wait_any([asyncio.Event(), asyncio.Event()], timeout=0.01)
    assert len(asyncio.all_tasks()) == before


async def test_a_poll_wakes_its_watcher_each_period_and_stops_with_its_block() -> None:
    wake = asyncio.Event()
    loop = asyncio.get_running_loop()
    with Poll(wake, 0.01) as poll:
        for _ in range(3):  # again and again, each wait without a timeout of its own
            started = loop.time()
            await asyncio.wait_for(wake.wait(), 5)
            assert poll.due and loop.time() - started < 5
            poll.due = False
            wake.clear()
    await asyncio.sleep(0.05)
    assert not wake.is_set() and not poll.due  # no timer left running after the block
