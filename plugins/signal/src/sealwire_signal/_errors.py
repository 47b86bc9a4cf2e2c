"""Errors of the Signal binding, each a subclass of a :mod:`sealwire.errors` category.

Wire codes (``code``) are stable strings a peer or a log can name without
revealing any secret.
"""

from __future__ import annotations

from sealwire.errors import (
    AuthenticationError,
    DecodeError,
    LocalProtocolError,
    RemoteProtocolError,
    StateError,
)

__all__ = [
    "BadSignatureError",
    "DuplicateMessageError",
    "EnvelopeDecodeError",
    "MessageDecryptError",
    "NoSessionError",
    "SkippedKeyLimitError",
    "UnknownPrekeyError",
    "UnsupportedVersionError",
    "WeakKeyError",
]


class EnvelopeDecodeError(DecodeError):
    """A Signal envelope, header, bundle or stored state was malformed."""

    code = "signal.decode"


class UnsupportedVersionError(EnvelopeDecodeError):
    """An envelope or stored state names a version this release does not read."""

    code = "signal.version"


class BadSignatureError(AuthenticationError):
    """A prekey signature did not verify under the peer's identity key (X3DH §3.3)."""

    code = "signal.signature"


class MessageDecryptError(AuthenticationError):
    """A message or header did not authenticate; the session state is unchanged."""

    code = "signal.decrypt"


class WeakKeyError(AuthenticationError):
    """A peer's X25519 key gave an all-zero shared secret (a low-order point)."""

    code = "signal.weak_key"


class DuplicateMessageError(RemoteProtocolError):
    """The message was already decrypted (or its key was discarded): a replay.

    Double Ratchet §3.5: a message key is deleted once used, so a second copy
    can never be read. The session state is unchanged.
    """

    code = "signal.duplicate"


class SkippedKeyLimitError(RemoteProtocolError):
    """A header asks to skip more than ``MAX_SKIP`` message keys (Double Ratchet §3.5)."""

    code = "signal.max_skip"


class UnknownPrekeyError(RemoteProtocolError):
    """An initial message names a prekey we do not hold (used, expired or never ours)."""

    code = "signal.unknown_prekey"


class NoSessionError(LocalProtocolError, StateError):
    """There is no session with this peer and the call cannot start one."""

    code = "signal.no_session"
