"""Errors of the Double Ratchet toolkit, each under a :mod:`sealwire.errors` category.

Every one of them leaves the ratchet state the caller passed in untouched:
the functions are pure and return a new state only on success. Wire codes
(``code``) name the failure without revealing any key or plaintext. A
protocol that embeds the ratchet may subclass them to give its own codes.
"""

from __future__ import annotations

from sealwire.errors import AuthenticationError, DecodeError, RemoteProtocolError, StateError

__all__ = [
    "ChainExhaustedError",
    "DuplicateMessageError",
    "MessageDecryptError",
    "RatchetDecodeError",
    "SkippedKeyLimitError",
    "UnknownChainError",
    "WeakKeyError",
]


class RatchetDecodeError(DecodeError):
    """A ratchet header, key or stored ratchet record is malformed."""

    code = "ratchet.decode"


class MessageDecryptError(AuthenticationError):
    """A message (or an encrypted header) did not authenticate; the state is unchanged."""

    code = "ratchet.decrypt"


class UnknownChainError(MessageDecryptError):
    """A header names a ratchet key that is neither the current receiving chain nor
    an earlier one, and the DH step it would start does not authenticate: a forged
    or foreign header. Nothing is stepped."""

    code = "ratchet.unknown_chain"


class WeakKeyError(AuthenticationError):
    """A peer's X25519 key gave an all-zero shared secret (a low-order point)."""

    code = "ratchet.weak_key"


class DuplicateMessageError(RemoteProtocolError):
    """The message was already decrypted (or its key was discarded): a replay.

    Double Ratchet §3.5: a message key is deleted once used, so a second copy
    can never be read.
    """

    code = "ratchet.duplicate"


class SkippedKeyLimitError(RemoteProtocolError):
    """A header asks to skip more than ``MAX_SKIP`` message keys (Double Ratchet §3.5)."""

    code = "ratchet.max_skip"


class ChainExhaustedError(StateError):
    """A sending chain reached its bound: no more messages until a DH step."""

    code = "ratchet.chain_exhausted"
