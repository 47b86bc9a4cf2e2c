"""Entry point module of ``sealwire-tls``: the TLS and DTLS bindings and ``sealwire tls``."""

from __future__ import annotations

from collections.abc import Sequence

import sealwire
from sealwire.binding import Binding
from sealwire.components import CliCommand
from sealwire_tls._binding import TlsBinding
from sealwire_tls._cli import tls_command
from sealwire_tls._dtls_binding import DtlsBinding

__all__ = ["sealwire_bindings", "sealwire_cli_commands"]


@sealwire.hookimpl
def sealwire_bindings() -> Sequence[type[Binding]]:
    """The TLS session binding (``urn:sealwire:binding:tls:1``) and the DTLS datagram
    binding (``urn:sealwire:binding:dtls:1``)."""
    return [TlsBinding, DtlsBinding]


@sealwire.hookimpl
def sealwire_cli_commands() -> Sequence[CliCommand]:
    """``sealwire tls cert``: export the agent's certificate and key for other tools."""
    return [tls_command()]
