"""Entry point module of ``sealwire-noise``: contributes the Noise binding."""

from __future__ import annotations

from collections.abc import Sequence

import sealwire
from sealwire.binding import Binding
from sealwire_noise._binding import NoiseBinding

__all__ = ["sealwire_bindings"]


@sealwire.hookimpl
def sealwire_bindings() -> Sequence[type[Binding]]:
    """The Noise session binding (``urn:sealwire:binding:noise:1``)."""
    return [NoiseBinding]
