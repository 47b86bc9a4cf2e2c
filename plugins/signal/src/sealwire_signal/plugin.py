"""Entry point of the ``sealwire`` plugin group: contributes :class:`SignalBinding`."""

from __future__ import annotations

from collections.abc import Sequence

import sealwire
from sealwire.binding import Binding
from sealwire_signal._binding import SignalBinding

__all__ = ["sealwire_bindings"]


@sealwire.hookimpl
def sealwire_bindings() -> Sequence[type[Binding]]:
    """The Signal mailbox binding."""
    return [SignalBinding]
