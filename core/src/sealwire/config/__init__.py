"""An agent's home folder: its configuration, its store and the store's key.

Layout of a home (``--home``, ``$SEALWIRE_HOME``, default ``./.sealwire``)::

    sealwire.toml   configuration: [agent], [policy], [bindings.<name>]
    state.db        the SQLite store (encrypted at rest), holding the identity
    store.key       the store key, mode 0600 (unless $SEALWIRE_STORE_KEY or a
                    key provider plugin supplies it)

``[agent]`` keys: ``name``, ``description``, ``listen`` (transport URLs),
``relay`` (relay URL), ``relay_id`` (the relay's id, pinned: written by
``sealwire init --relay`` from the relay's signed descriptor; every login then
requires the relay to prove it), ``relay_ca`` (a PEM file of CA certificates, or
the relay's own certificate, that an ``https://`` relay must chain to instead of
the system store; relative to the home), ``trust`` (``tofu``, ``pinned`` or
``allowlist``).

``[agent.store]`` chooses where the state lives: ``backend`` (``sqlite``, the
default, in ``state.db``; or a store plugin's name, e.g. ``aws`` from
``sealwire-store-aws``) and that backend's options as the table's other keys
(strings). The table is checked when the file is read: an unknown backend names
the package that brings it, an unknown or missing option is named.

``[bindings.<name>]`` holds a binding's options (each binding declares and checks
its own: :meth:`sealwire.binding.Binding.check_options`), ``[policy]`` the
policy (:class:`sealwire.policy.PolicyConfig`), ``[push]`` the push-notification
policy.

The file is read through a typed schema (pydantic, :mod:`._schema`) and checked
against the loaded plugins (:func:`check_names`) when it is read: every error is
one line naming the file, the key and what is allowed. It is written by a TOML
writer (tomlkit, :mod:`._write`), which keeps a person's comments when a command
rewrites it. A key file readable by group or others is refused, with the
``chmod 600`` to run.
"""

from __future__ import annotations

from sealwire.config._home import (
    HOME_ENV,
    KEY_FILE,
    default_home,
    describe_trust,
    init_home,
    migrate_store,
    open_agent,
    open_home,
    push_policy,
    read_config,
    relay_address,
)
from sealwire.config._model import (
    CONFIG_FILE,
    DEFAULT_STORE_BACKEND,
    STORE_FILE,
    STORE_PACKAGES,
    AgentConfig,
    StoreConfig,
    check_names,
    check_store,
    listen_schemes,
)

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_STORE_BACKEND",
    "HOME_ENV",
    "KEY_FILE",
    "STORE_FILE",
    "STORE_PACKAGES",
    "AgentConfig",
    "StoreConfig",
    "check_names",
    "check_store",
    "default_home",
    "describe_trust",
    "init_home",
    "listen_schemes",
    "migrate_store",
    "open_agent",
    "open_home",
    "push_policy",
    "read_config",
    "relay_address",
]
