# mypy: disable-error-code="empty-body"
"""The pluggy hook specifications of Sealwire (project name ``sealwire``).

Rules of this file:

* Hooks *contribute*; core *decides*. Every hook returns components that
  declare their own name; core merges them and fails on a duplicate name,
  naming both plugins. No hook is ``firstresult``: the binding choice stays in
  core's policy.
* Hooks receive no secrets, so tracing them is safe.
* A spec grows only by adding parameters.

The hooks are called once each, through pluggy (hook wrappers and tracing see
them), when :func:`sealwire.plugins.load_registry` builds the registry, in this
order: bindings, transports, state stores, store key providers, relay
backends, policy rules, CLI commands. Each implementation returns a sequence
(empty rather than None, so that what it returns is attributed to it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from sealwire.binding import Binding
    from sealwire.components import (
        CliCommand,
        RelayBackendProvider,
        StoreKeyProvider,
        TransportProvider,
    )
    from sealwire.policy import PolicyRule
    from sealwire.store import StoreBackend

__all__ = ["hookspec"]

hookspec = pluggy.HookspecMarker("sealwire")


@hookspec
def sealwire_bindings() -> Sequence[type[Binding]]:
    """Contribute protocol bindings.

    :return: binding classes, each with a class attribute ``info``
        (:class:`~sealwire.binding.BindingInfo`) whose ``name`` is unique, and a
        subclass of the types of its ``info.shape``
        (:func:`sealwire.binding.shape_types`: :class:`~sealwire.binding.SessionBinding`,
        :class:`~sealwire.binding.DatagramBinding` or
        :class:`~sealwire.binding.CarrierBinding` for sessions,
        :class:`~sealwire.binding.MailboxBinding`, :class:`~sealwire.binding.GroupBinding`)
        with every abstract method implemented. Core instantiates them per agent
        with a :class:`~sealwire.binding.BindingContext`.

    Called when the plugin registry is built.

    .. versionadded:: 0.1
    """


@hookspec
def sealwire_transports() -> Sequence[TransportProvider]:
    """Contribute carriers of bytes for URL schemes (``tcp``, ``ws``, ``udp`` ...).

    :return: :class:`sealwire.components.TransportProvider` objects; a scheme
        may be provided once.

    Called when the plugin registry is built.

    .. versionadded:: 0.1
    """


@hookspec
def sealwire_state_stores() -> Sequence[StoreBackend]:
    """Contribute state store backends (the agent's persistent state).

    :return: :class:`sealwire.store.StoreBackend` objects, selected by the
        scheme of the agent's store URL (``sqlite`` and ``memory`` are built in).

    Called when the plugin registry is built.

    .. versionadded:: 0.1
    """


@hookspec
def sealwire_store_key_providers() -> Sequence[StoreKeyProvider]:
    """Contribute sources of the store's at-rest key (a secrets manager, a KMS).

    :return: :class:`sealwire.components.StoreKeyProvider` objects. Each is
        asked in turn, after the environment variable and the key file, and
        returns the key or ``None``. The hook itself receives no secret.

    Called when the plugin registry is built.

    .. versionadded:: 0.1
    """


@hookspec
def sealwire_relay_backends() -> Sequence[RelayBackendProvider]:
    """Contribute relay storage backends (``sealwire-relay`` brings ``sqlite`` and ``nats``).

    :return: :class:`sealwire.components.RelayBackendProvider` objects, chosen
        by name in the relay's configuration.

    Called when the plugin registry is built.

    .. versionadded:: 0.1
    """


@hookspec
def sealwire_policy_rules() -> Sequence[PolicyRule]:
    """Contribute policy rules, consulted before the default rules.

    :return: :class:`sealwire.policy.PolicyRule` objects. A rule may propose a
        binding among the candidates core offers it, with a reason; it cannot
        bring back a binding that configuration denied or that lacks a required
        property.

    Called when the plugin registry is built.

    .. versionadded:: 0.1
    """


@hookspec
def sealwire_cli_commands() -> Sequence[CliCommand]:
    """Contribute ``sealwire`` sub-commands.

    :return: :class:`sealwire.components.CliCommand` objects with unique names,
        each wrapping a :class:`click.Command` or :class:`click.Group` (its
        name and help are the command's). A command reads the global options
        (``--home``, ``--json``) and the loaded registry through
        :func:`sealwire.cli.output.state`, prints data through
        :func:`sealwire.cli.output.emit` (JSON under ``--json``) and raises a
        :class:`sealwire.errors.SealwireError` for an expected failure, which
        the CLI prints as one line with its exit code (docs/cli.md).

    Called when the CLI starts; a plugin that fails to load still leaves
    ``sealwire --help`` and ``--version`` working.

    .. versionadded:: 0.1
    .. versionchanged:: 0.2
       ``CliCommand`` carries a ``click.Command`` (it was an argparse
       ``configure``/``run`` pair).
    """
