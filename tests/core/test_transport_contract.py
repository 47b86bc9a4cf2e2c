"""Core's own stream transports hold the public transport contract suite."""

from __future__ import annotations

from sealwire.components import TransportProvider
from sealwire.plugins import load_registry
from sealwire.testing.transport_contract import StreamTransportContract


def _provider(scheme: str) -> TransportProvider:
    return load_registry().transport(scheme)


class TestTcpContract(StreamTransportContract):
    provider = _provider("tcp")

    def listen_url(self) -> str:
        return "tcp://127.0.0.1:0"


class TestWebSocketContract(StreamTransportContract):
    provider = _provider("ws")

    def listen_url(self) -> str:
        return "ws://127.0.0.1:0/a2a"
