"""Entry point of the ``sealwire`` plugin group: the MLS group binding and ``sealwire group``."""

from __future__ import annotations

from collections.abc import Sequence

import sealwire
from sealwire.binding import Binding
from sealwire.components import CliCommand
from sealwire_mls._binding import MlsBinding
from sealwire_mls._cli import GROUP_COMMAND

__all__ = ["sealwire_bindings", "sealwire_cli_commands"]


@sealwire.hookimpl
def sealwire_bindings() -> Sequence[type[Binding]]:
    """The MLS group binding."""
    return [MlsBinding]


@sealwire.hookimpl
def sealwire_cli_commands() -> Sequence[CliCommand]:
    """``sealwire group create|add|remove|list|send``."""
    return [GROUP_COMMAND]
