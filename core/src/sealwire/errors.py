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

import os
import socket
import ssl

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
    "describe_cause",
]

MAX_CAUSE_DEPTH = 16
"""Links of ``__cause__``/``__context__`` followed; real chains (httpx over httpcore over
a socket error) are 3 to 5 deep, and a cycle must not loop."""


def describe_cause(exc: BaseException) -> str:
    """The underlying reason of a failed connect, listen or send, in words a person acts
    on: ``connection refused``, ``address already in use``, ``name or service not known``,
    ``TLS certificate verify failed: ...``, ``timed out``; found down ``exc``'s chain of
    causes (an ``httpx.ConnectError`` wraps the socket's error). The exception's type
    name when nothing better is found. Never a secret: OS and TLS reasons only."""
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and len(chain) < MAX_CAUSE_DEPTH and link not in chain:
        chain.append(link)
        link = link.__cause__ or link.__context__
    for link in chain:
        if isinstance(link, ssl.SSLCertVerificationError):
            return f"TLS certificate verify failed: {link.verify_message}"
    for link in chain:
        if isinstance(link, socket.gaierror) and link.strerror:
            return link.strerror[:1].lower() + link.strerror[1:]
        if isinstance(link, TimeoutError) and not link.errno:
            return "timed out"
        if isinstance(link, OSError) and link.errno and link.errno > 0:
            return os.strerror(link.errno)[:1].lower() + os.strerror(link.errno)[1:]
    for link in chain:
        if isinstance(link, ssl.SSLError):
            return f"TLS failed: {link.reason or type(link).__name__}"
        if isinstance(link, UnicodeError):  # IDNA refused the host (a label over 63 characters)
            return "not a valid host name"
    return type(exc).__name__


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
