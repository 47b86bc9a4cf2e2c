"""The relay (ARCHITECTURE layer 8): the delivery service that sees ciphertext only.

A prekey directory and a KeyPackage directory (one-time keys handed out once),
a directory of signed agent cards (so group invitations need not carry them),
mailboxes for offline agents (at-least-once, idempotent by message id, pushed
over WebSocket), and ordered group logs that accept one commit per epoch.
Agents authenticate by signing a challenge with their identity key. Storage is
SQLite by default or NATS JetStream; relays federate by forwarding to each
other over mutually authenticated links.

``sealwire relay serve`` calls :func:`serve_relay` with
:meth:`RelayConfig.from_toml`; agents use :class:`RelayClient`.
"""

from __future__ import annotations

from sealwire.relay._backend import BUILTIN_RELAY_BACKENDS, RelayBackend, open_backend
from sealwire.relay._client import RelayClient
from sealwire.relay._errors import (
    EpochConflictError,
    ForbiddenError,
    LimitExceeded,
    NotFoundError,
    RelayAuthError,
    RelayError,
    RelayUnavailable,
)
from sealwire.relay._limits import RelayLimits
from sealwire.relay._model import (
    MAX_CARDS_PER_FETCH,
    Delivery,
    FetchedPrekeys,
    GroupLogEntry,
    mailbox_address,
    parse_mailbox_address,
)
from sealwire.relay._server import (
    PeerRelay,
    RelayConfig,
    RunningRelay,
    load_or_create_identity,
    running_relay,
    serve_relay,
)

__all__ = [
    "BUILTIN_RELAY_BACKENDS",
    "MAX_CARDS_PER_FETCH",
    "Delivery",
    "EpochConflictError",
    "FetchedPrekeys",
    "ForbiddenError",
    "GroupLogEntry",
    "LimitExceeded",
    "NotFoundError",
    "PeerRelay",
    "RelayAuthError",
    "RelayBackend",
    "RelayClient",
    "RelayConfig",
    "RelayError",
    "RelayLimits",
    "RelayUnavailable",
    "RunningRelay",
    "load_or_create_identity",
    "mailbox_address",
    "open_backend",
    "parse_mailbox_address",
    "running_relay",
    "serve_relay",
]
