"""Waiting in asynchronous tests for something another task or process does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

__all__ = ["next_items", "until"]

T = TypeVar("T")


async def until(predicate: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    """Return once ``predicate()`` is true; AssertionError naming ``what`` after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def next_items(items: AsyncIterator[T], n: int, timeout: float = 20.0) -> list[T]:
    """The next ``n`` items of ``items``, each within ``timeout`` seconds."""
    return [await asyncio.wait_for(anext(items), timeout) for _ in range(n)]
