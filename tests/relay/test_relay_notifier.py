"""The relay's wake-ups: a change stored while a reader reads is never missed."""

from __future__ import annotations

import asyncio

from sealwire_relay._service import Notifier, wait_any


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
