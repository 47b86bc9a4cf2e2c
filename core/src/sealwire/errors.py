"""The error hierarchy of Sealwire and every plugin.

One root, :class:`SealwireError`, and the categories every plugin subclasses
(after OpenMLS's four sources of error):

* :class:`DecodeError` - hostile or malformed input; names the field, never
  the secret.
* :class:`ProtocolError` - a peer or the local side broke the protocol's rules
  (:class:`RemoteProtocolError`, :class:`LocalProtocolError`).
* :class:`AuthenticationError` - a MAC, tag or signature failed; opaque on
  purpose, it never says which check failed in a way an attacker could use.
* :class:`StateError` - the API was used out of order (misuse).
* :class:`InternalError` - a bug in Sealwire.

Wire codes (a TLS alert, an MLS or Noise reason, a JSON-RPC code) live on the
class as ``code``.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "DecodeError",
    "InternalError",
    "LocalProtocolError",
    "PolicyError",
    "ProtocolError",
    "RemoteProtocolError",
    "SealwireError",
    "StateError",
    "TrustError",
]


class SealwireError(Exception):
    """Root of every error Sealwire raises on purpose."""

    code: int | str | None = None


class DecodeError(SealwireError):
    """Input bytes or JSON could not be decoded.

    ``field`` names the structure or field that was malformed (never its
    secret contents).
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class ProtocolError(SealwireError):
    """A protocol rule was broken."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol (a well-formed but forbidden message)."""


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol forbids."""


class AuthenticationError(SealwireError):
    """Authentication failed: a tag, MAC or signature did not verify.

    Deliberately opaque: the message never says which secret-dependent check
    failed.
    """

    def __init__(self, message: str = "authentication failed") -> None:
        super().__init__(message)


class TrustError(AuthenticationError):
    """A peer's identity is not trusted (unknown, pinned to another key, denied)."""

    def __init__(self, message: str = "peer not trusted") -> None:
        super().__init__(message)


class StateError(SealwireError):
    """The API was used in a state that does not allow the call (misuse)."""


class ConfigurationError(SealwireError):
    """Configuration is missing or invalid."""


class PolicyError(SealwireError):
    """The policy allows no binding for this peer and situation."""


class InternalError(SealwireError):
    """A bug in Sealwire: an invariant did not hold."""
