"""Reaching a relay over HTTP(S): the TLS context of relay clients, the check of a
relay base URL, and the typed error of a request that got no answer."""

from __future__ import annotations

import functools
import ssl
from urllib.parse import urlsplit

import httpx

from sealwire.errors import ConfigurationError, DecodeError, describe_cause
from sealwire.relay.errors import RelayCertificateError, RelayError, RelayUnavailable

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "check_base_url",
    "tls_context",
    "transport_error",
]

DEFAULT_TIMEOUT_SECONDS = 10.0
# httpx wraps the ssl error of a refused certificate a few levels deep: causes
# followed this far.
MAX_CAUSE_DEPTH = 8


@functools.cache
def tls_context(ca: str | None = None) -> ssl.SSLContext:
    """The TLS context of relay clients trusting the system store, or only ``ca``.

    ``ca`` is a PEM file of CA certificates, or the relay's own (self-signed)
    certificate, which pins it. One context per file for every client: building
    one loads the CA store (~30 ms).
    """
    if ca is None:
        return ssl.create_default_context()
    try:
        context = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"cannot load the relay CA file {ca}: {describe_cause(exc)}"
        ) from None
    # A pinned relay certificate need not be a CA's: accept a chain ending at it.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def transport_error(url: str, exc: httpx.HTTPError) -> RelayError:
    """The typed error for a request to the relay at ``url`` that got no answer."""
    if _untrusted_certificate(exc):
        return RelayCertificateError(
            f"relay {url}: its TLS certificate is not trusted ({describe_cause(exc)};"
            " set the relay CA)"
        )
    return RelayUnavailable(f"relay {url} unreachable: {describe_cause(exc)}")


def _untrusted_certificate(exc: BaseException) -> bool:
    """Whether ``exc`` (an httpx error) comes from a refused TLS certificate."""
    seen: BaseException | None = exc
    for _ in range(MAX_CAUSE_DEPTH):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def check_base_url(url: str) -> None:
    """DecodeError unless ``url`` is an ``http(s)://host[:port][/path]`` base URL."""
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        ok = ok and parts.port != 0 and not parts.query and not parts.fragment
    except ValueError:  # a malformed host, or a port that is not a number in range
        ok = False
    if not ok:
        raise DecodeError("expected an http(s):// base URL", field="relay_url")
