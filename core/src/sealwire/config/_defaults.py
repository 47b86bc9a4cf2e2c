"""Names and defaults of a home, shared by the schema, the model and the home."""

from __future__ import annotations

__all__ = [
    "CONFIG_FILE",
    "DEFAULT_DESCRIPTION",
    "DEFAULT_NAME",
    "DEFAULT_STORE_BACKEND",
    "STORE_FILE",
]

CONFIG_FILE = "sealwire.toml"
STORE_FILE = "state.db"
DEFAULT_STORE_BACKEND = "sqlite"
DEFAULT_NAME = "sealwire-agent"
DEFAULT_DESCRIPTION = "A Sealwire agent"
