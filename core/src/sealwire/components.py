"""Components that plugins contribute through the hooks (besides bindings).

Each declares its own name; the registry (:mod:`sealwire.plugins`) refuses
two components of one kind with the same name and names both plugins.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from sealwire.store import StoreKey

__all__ = ["CliCommand", "RelayBackendProvider", "StoreKeyProvider", "TransportProvider"]


@attrs.frozen(kw_only=True)
class TransportProvider:
    """A carrier of bytes for one URL scheme.

    For a stream scheme, ``connect(url)`` returns a
    :class:`sealwire.transport.FrameStream` and ``serve(url, handler)`` a
    listener; for a datagram scheme (``datagram=True``) they deal in
    :class:`sealwire.transport.DatagramEndpoint`.
    """

    name: str
    scheme: str
    datagram: bool
    connect: Callable[[str], Awaitable[Any]]
    serve: Callable[[str, Callable[[Any], Awaitable[None]]], Awaitable[Any]]


@attrs.frozen(kw_only=True)
class StoreKeyProvider:
    """A source of the store's at-rest key; ``load()`` returns it or ``None``."""

    name: str
    load: Callable[[], StoreKey | None]


@attrs.frozen(kw_only=True)
class RelayBackendProvider:
    """A relay storage backend; ``open(options)`` returns a relay backend object."""

    name: str
    open: Callable[[Mapping[str, Any]], Any]


@attrs.frozen(kw_only=True)
class CliCommand:
    """A ``sealwire`` sub-command.

    ``configure`` adds the command's arguments to its parser; ``run`` gets the
    parsed arguments and returns the process exit code.
    """

    name: str
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
