"""Sealwire agent state and store key in HashiCorp Vault or OpenBao (KV version 2).

``[agent.store] backend = "vault"`` with ``url`` and ``prefix``: the state is one
sealed manifest committed with KV v2 ``cas`` (see :class:`sealwire.store.ManagedStore`),
large values in content-addressed blob secrets, and a local encrypted
write-ahead cache in the agent's home.
"""

from __future__ import annotations

from sealwire_store_vault._open import (
    DEFAULT_CACHE_FILE,
    KEY_PATH_ENV,
    OPTIONS,
    load_store_key,
    open_vault_store,
)
from sealwire_store_vault._vault import POLICY_TEMPLATE, VaultSecretsBackend

__all__ = [
    "DEFAULT_CACHE_FILE",
    "KEY_PATH_ENV",
    "OPTIONS",
    "POLICY_TEMPLATE",
    "VaultSecretsBackend",
    "load_store_key",
    "open_vault_store",
]

__version__ = "0.1.0"
