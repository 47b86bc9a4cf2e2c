"""Helpers for tests of the TLS binding (this repository's and users'): not for production.

* :func:`free_port` - a loopback TCP port outside the kernel's ephemeral range
  (core's :func:`sealwire.testing.ports.free_port`).
* :func:`tls_agent` - an :class:`~sealwire.agent.Agent` serving A2A over HTTPS on
  loopback, its card naming that URL.
* :func:`export_client_files` - an external client's certificate and key as PEM
  files (what curl's ``--cert``/``--key`` and an ``ssl`` context take), plus the
  server's certificate as the CA file to pin it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509

from sealwire.agent import Agent
from sealwire.identity import Identity, TrustMode
from sealwire.plugins import Registry, load_registry
from sealwire.store import MemoryStore
from sealwire.testing.ports import free_port
from sealwire_tls import plugin
from sealwire_tls._certs import pem, private_key_pem, self_signed_certificate

__all__ = ["export_client_files", "free_port", "tls_agent", "tls_registry"]


def tls_registry() -> Registry:
    """A registry with the TLS binding only (no entry points)."""
    return load_registry(extra_plugins=[plugin], load_entry_points=False)


def tls_agent(
    name: str,
    *,
    serve: bool = True,
    options: Mapping[str, Any] | None = None,
    identity: Identity | None = None,
    trust_mode: TrustMode = TrustMode.TOFU,
    registry: Registry | None = None,
    **kwargs: Any,
) -> Agent:
    """An agent offering the TLS binding; with ``serve`` it listens on a loopback port."""
    opts = dict(options or {})
    listen: list[str] = []
    if serve:
        url = f"https://127.0.0.1:{free_port()}"
        opts.setdefault("url", url)
        listen = [url]
    return Agent(
        identity or Identity.generate(),
        MemoryStore(),
        name=name,
        listen=listen,
        registry=registry or tls_registry(),
        binding_options={"tls": opts},
        trust_mode=trust_mode,
        **kwargs,
    )


def export_client_files(
    identity: Identity, folder: Path, server_certificate: x509.Certificate
) -> tuple[Path, Path, Path]:
    """(client cert.pem, client key.pem (0600), server.pem) in ``folder``."""
    cert = folder / "client-cert.pem"
    key = folder / "client-key.pem"
    server = folder / "server.pem"
    cert.write_bytes(pem([self_signed_certificate(identity)]))
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_key_pem(identity))
    server.write_bytes(pem([server_certificate]))
    return cert, key, server
