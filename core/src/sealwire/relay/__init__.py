"""The relay as agents and bindings see it (ARCHITECTURE layer 8).

A relay is the delivery service that sees ciphertext only: prekey, KeyPackage
and card directories, mailboxes for offline agents (at-least-once, idempotent
by sender and message id) and ordered group logs that accept one commit per
epoch (a second only when it names the first, found invalid, as superseded).
Agents authenticate by signing a challenge with their identity key.

This package is the agent's side: :class:`RelayPort` (what agents and
bindings call), :class:`RelayDirectory` (the directories of a peer's home
relay, :func:`peer_directory`), :class:`RelayClient` (the port over the
relay's HTTP and WebSocket API), the records and errors, and the payload framing
(:func:`wrap`, :func:`unwrap`). The server is the ``sealwire-relay``
distribution (``sealwire relay serve``); nothing here imports it.
"""

from __future__ import annotations

from sealwire.relay._client import (
    RelayClient,
    RelayDescriptor,
    fetch_descriptor,
    verify_descriptor,
)
from sealwire.relay.errors import (
    EpochConflictError,
    ForbiddenError,
    LimitExceeded,
    NotFoundError,
    RelayAuthError,
    RelayCertificateError,
    RelayError,
    RelayIdentityError,
    RelayUnavailable,
)
from sealwire.relay.port import RelayDirectory, RelayPort, peer_directory
from sealwire.relay.wire import (
    MAX_CARDS_PER_FETCH,
    Delivery,
    FetchedPrekeys,
    GroupLogEntry,
    mailbox_address,
    parse_mailbox_address,
    unwrap,
    wrap,
)

__all__ = [
    "MAX_CARDS_PER_FETCH",
    "Delivery",
    "EpochConflictError",
    "FetchedPrekeys",
    "ForbiddenError",
    "GroupLogEntry",
    "LimitExceeded",
    "NotFoundError",
    "RelayAuthError",
    "RelayCertificateError",
    "RelayClient",
    "RelayDescriptor",
    "RelayDirectory",
    "RelayError",
    "RelayIdentityError",
    "RelayPort",
    "RelayUnavailable",
    "fetch_descriptor",
    "mailbox_address",
    "parse_mailbox_address",
    "peer_directory",
    "unwrap",
    "verify_descriptor",
    "wrap",
]
