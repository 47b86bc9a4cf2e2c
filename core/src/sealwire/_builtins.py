"""Core's own contributions, registered like any plugin: transports and stores."""

from __future__ import annotations

from collections.abc import Sequence

from sealwire import hookimpl, transport
from sealwire.components import TransportProvider
from sealwire.store import BUILTIN_BACKENDS, StoreBackend


@hookimpl
def sealwire_transports() -> Sequence[TransportProvider]:
    stream = [
        TransportProvider(
            name=f"builtin-{scheme}",
            scheme=scheme,
            datagram=False,
            connect=transport.connect,
            serve=transport.serve,
        )
        for scheme in ("tcp", "ws", "wss")
    ]
    return [
        *stream,
        TransportProvider(
            name="builtin-udp",
            scheme="udp",
            datagram=True,
            connect=transport.connect_datagram,
            serve=transport.serve_datagram,
        ),
    ]


@hookimpl
def sealwire_state_stores() -> Sequence[StoreBackend]:
    return list(BUILTIN_BACKENDS)
