"""The Sealwire relay: the delivery service that sees ciphertext only.

A prekey directory and a KeyPackage directory (one-time keys handed out once),
a directory of signed agent cards, mailboxes for offline agents
(at-least-once, idempotent by sender and message id, pushed over WebSocket),
and ordered group logs that accept one commit per epoch (a second only naming
the first as superseded) and change their member list only with a commit.
Agents authenticate by signing a challenge with their identity key. Storage is SQLite by default
or NATS JetStream; relays federate by forwarding to each other over mutually
authenticated links.

``sealwire relay serve`` (or ``python -m sealwire_relay``) calls
:func:`serve_relay` with :meth:`RelayConfig.from_toml`; :func:`running_relay`
serves one inside a running event loop. Agents reach a relay through
:class:`sealwire.relay.RelayClient`, never through this package.
"""

from __future__ import annotations

from sealwire_relay._backend import GroupAccess, GroupAppend, RelayBackend, next_access
from sealwire_relay._limits import RelayLimits
from sealwire_relay._providers import BUILTIN_RELAY_BACKENDS, open_backend
from sealwire_relay._server import (
    PeerRelay,
    RelayConfig,
    RunningRelay,
    load_or_create_identity,
    running_relay,
    serve_relay,
)

__all__ = [
    "BUILTIN_RELAY_BACKENDS",
    "GroupAccess",
    "GroupAppend",
    "PeerRelay",
    "RelayBackend",
    "RelayConfig",
    "RelayLimits",
    "RunningRelay",
    "load_or_create_identity",
    "next_access",
    "open_backend",
    "running_relay",
    "serve_relay",
]
