"""Sealwire agent state and store key in AWS Secrets Manager.

``[agent.store] backend = "aws"`` with ``prefix`` and ``region``: the state is
one sealed manifest secret committed by compare-and-set (see
:class:`sealwire.store.ManagedStore`), large values in content-addressed blob
secrets, and a local encrypted write-ahead cache in the agent's home.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sealwire.plugins import lazy_attributes
from sealwire_store_aws._options import DEFAULT_CACHE_FILE, OPTIONS

if TYPE_CHECKING:
    from sealwire_store_aws._aws import AwsSecretsBackend, make_client
    from sealwire_store_aws._open import KEY_SECRET_ENV, load_store_key, open_aws_store

__all__ = [
    "DEFAULT_CACHE_FILE",
    "KEY_SECRET_ENV",
    "OPTIONS",
    "AwsSecretsBackend",
    "load_store_key",
    "make_client",
    "open_aws_store",
]

__version__ = "0.1.0"

# Names that need the SDK, imported on first use: importing the package, as the
# plugin loader does in every process, does not import the SDK.
__getattr__ = lazy_attributes(
    __name__,
    {
        "AwsSecretsBackend": "_aws",
        "KEY_SECRET_ENV": "_open",
        "load_store_key": "_open",
        "make_client": "_aws",
        "open_aws_store": "_open",
    },
)
