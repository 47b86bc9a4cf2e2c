"""Which async generators were left to the garbage collector to close."""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def left_to_the_collector() -> Iterator[list[str]]:
    """The names of the async generators that, while the block ran, were dropped
    unfinished: their close was left to the event loop's finalizer (a task each)
    instead of being done by whoever iterated them. Runs a collection at the end."""
    names: list[str] = []
    hooks = sys.get_asyncgen_hooks()
    outer = hooks.finalizer

    def finalizer(agen: Any) -> None:
        names.append(agen.__qualname__)
        if outer is not None:
            outer(agen)

    sys.set_asyncgen_hooks(firstiter=hooks.firstiter, finalizer=finalizer)
    try:
        yield names
        gc.collect()
    finally:
        sys.set_asyncgen_hooks(*hooks)
