"""Components that plugins contribute through the hooks (besides bindings).

Each declares its own name; the registry (:mod:`sealwire.plugins`) refuses
two components of one kind with the same name and names both plugins.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import click

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


@attrs.frozen
class CliCommand:
    """A ``sealwire`` sub-command: a :class:`click.Command` (or :class:`click.Group`).

    Its name and help are the click command's. It reads the global options
    (``--home``, ``--json``, the loaded registry) through
    :func:`sealwire.cli.output.state`, prints through the helpers there, and
    raises :class:`sealwire.errors.SealwireError` for an expected failure: the
    CLI prints it as one line and exits with the code its kind maps to.
    """

    command: click.Command = attrs.field(validator=attrs.validators.instance_of(click.Command))

    @command.validator
    def _named(self, _attribute: object, command: click.Command) -> None:
        if not command.name:
            raise ValueError("a CLI command needs a name")

    @property
    def name(self) -> str:
        """The sub-command's name (``sealwire NAME ...``)."""
        return self.command.name or ""

    @property
    def help(self) -> str:
        """The one-line help shown in ``sealwire --help``."""
        return self.command.get_short_help_str(limit=80)
