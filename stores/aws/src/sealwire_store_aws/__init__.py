"""Sealwire agent state and store key in AWS Secrets Manager.

``[agent.store] backend = "aws"`` with ``prefix`` and ``region``: the state is
one sealed manifest secret committed by compare-and-set (see
:mod:`sealwire_store_aws._engine`), large values in content-addressed blob
secrets, and a local encrypted write-ahead cache in the agent's home.
"""

from __future__ import annotations

from sealwire_store_aws._aws import AwsSecretsBackend, make_client
from sealwire_store_aws._engine import (
    CHUNK_MAX,
    HEAD_MAX,
    INLINE_MAX,
    MAX_REBASES,
    CallCounter,
    LostRace,
    ManagedStore,
    SecretsBackend,
)
from sealwire_store_aws._open import (
    DEFAULT_CACHE_FILE,
    KEY_SECRET_ENV,
    OPTIONS,
    load_store_key,
    open_aws_store,
)

__all__ = [
    "CHUNK_MAX",
    "DEFAULT_CACHE_FILE",
    "HEAD_MAX",
    "INLINE_MAX",
    "KEY_SECRET_ENV",
    "MAX_REBASES",
    "OPTIONS",
    "AwsSecretsBackend",
    "CallCounter",
    "LostRace",
    "ManagedStore",
    "SecretsBackend",
    "load_store_key",
    "make_client",
    "open_aws_store",
]

__version__ = "0.1.0"
