"""Sealwire agent state and store key in HashiCorp Vault or OpenBao (KV version 2).

``[agent.store] backend = "vault"`` with ``url`` and ``prefix``: the state is one
sealed manifest committed with KV v2 ``cas`` (see :class:`sealwire.store.ManagedStore`),
large values in content-addressed blob secrets, and a local encrypted
write-ahead cache in the agent's home.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sealwire.plugins import lazy_attributes
from sealwire_store_vault._options import DEFAULT_CACHE_FILE, OPTIONS

if TYPE_CHECKING:
    from sealwire_store_vault._open import KEY_PATH_ENV, load_store_key, open_vault_store
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

# Names that need the SDK, imported on first use: importing the package, as the
# plugin loader does in every process, does not import the SDK.
__getattr__ = lazy_attributes(
    __name__,
    {
        "KEY_PATH_ENV": "_open",
        "POLICY_TEMPLATE": "_vault",
        "VaultSecretsBackend": "_vault",
        "load_store_key": "_open",
        "open_vault_store": "_open",
    },
)
