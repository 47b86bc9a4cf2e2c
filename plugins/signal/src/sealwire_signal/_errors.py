"""Errors of the Signal binding, each a subclass of a :mod:`sealwire.errors` category.

Wire codes (``code``) are stable strings a peer or a log can name without
revealing any secret. The Double Ratchet comes from :mod:`sealwire.ratchet`;
its errors are translated into this plugin's (:func:`signal_errors`), each of
which is also a subclass of the ratchet's, so either name catches them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sealwire import ratchet
from sealwire.errors import (
    AuthenticationError,
    LocalProtocolError,
    RemoteProtocolError,
    StateError,
)

__all__ = [
    "BadSignatureError",
    "DowngradeError",
    "DuplicateMessageError",
    "EnvelopeDecodeError",
    "MessageDecryptError",
    "NoSessionError",
    "SkippedKeyLimitError",
    "UnknownPrekeyError",
    "UnsupportedVersionError",
    "WeakKeyError",
    "signal_errors",
]


class EnvelopeDecodeError(ratchet.RatchetDecodeError):
    """A Signal envelope, header, bundle or stored state was malformed."""

    code = "signal.decode"


class UnsupportedVersionError(EnvelopeDecodeError):
    """An envelope or stored state names a version this release does not read."""

    code = "signal.version"


class BadSignatureError(AuthenticationError):
    """A prekey signature did not verify under the peer's identity key (X3DH §3.3)."""

    code = "signal.signature"


class MessageDecryptError(ratchet.MessageDecryptError):
    """A message or header did not authenticate; the session state is unchanged."""

    code = "signal.decrypt"


class WeakKeyError(ratchet.WeakKeyError):
    """A peer's X25519 key gave an all-zero shared secret (a low-order point)."""

    code = "signal.weak_key"


class DuplicateMessageError(ratchet.DuplicateMessageError):
    """The message was already decrypted (or its key was discarded): a replay.

    Double Ratchet §3.5: a message key is deleted once used, so a second copy
    can never be read. The session state is unchanged.
    """

    code = "signal.duplicate"


class SkippedKeyLimitError(ratchet.SkippedKeyLimitError):
    """A header asks to skip more than ``MAX_SKIP`` message keys (Double Ratchet §3.5)."""

    code = "signal.max_skip"


class DowngradeError(RemoteProtocolError):
    """Both signed cards offer PQXDH and the peer's prekeys or initial message are plain
    X3DH: a downgrade. Nothing is sealed or opened."""

    code = "signal.downgrade"


class UnknownPrekeyError(RemoteProtocolError):
    """An initial message names a prekey we do not hold (used, expired or never ours)."""

    code = "signal.unknown_prekey"


class NoSessionError(LocalProtocolError, StateError):
    """There is no session with this peer and the call cannot start one."""

    code = "signal.no_session"


@contextmanager
def signal_errors() -> Iterator[None]:
    """Re-raise an error of :mod:`sealwire.ratchet` as this plugin's own kind (same
    category, the plugin's code), so the Signal API raises what it always raised."""
    try:
        yield
    except (EnvelopeDecodeError, MessageDecryptError, WeakKeyError, DuplicateMessageError,
            SkippedKeyLimitError):  # fmt: skip
        raise
    except ratchet.RatchetDecodeError as exc:
        text = str(exc).removeprefix(f"{exc.field}: ") if exc.field else str(exc)
        raise EnvelopeDecodeError(text, field=exc.field) from None
    except ratchet.MessageDecryptError:
        raise MessageDecryptError() from None
    except ratchet.WeakKeyError:
        raise WeakKeyError() from None
    except ratchet.DuplicateMessageError as exc:
        raise DuplicateMessageError(str(exc)) from None
    except ratchet.SkippedKeyLimitError as exc:
        raise SkippedKeyLimitError(str(exc)) from None
