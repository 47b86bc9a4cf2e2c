"""HTTP/3 over QUIC for the TLS binding (public API; importing it imports aioquic).

Install the extra: ``sealwire-tls[http3]``. The binding uses this itself when
``[bindings.tls] http3 = true``; external clients use :class:`Http3Transport`
under ``httpx`` (``httpx.AsyncClient(transport=Http3Transport(...))``), with a
client certificate and the server's exact certificate pinned.

* :class:`Http3Transport` - ``httpx`` transport, HTTP/3 to one pinned server.
* :func:`serve_http3` - an ASGI app over HTTP/3, clients admitted by certificate.
* :class:`AltSvc`, :func:`alt_svc` - the ``Alt-Svc`` advertisement on the TCP path.
* :func:`check_private_api` - InternalError when aioquic lacks what client
  authentication needs (see ``_quic``).
"""

from __future__ import annotations

from sealwire_tls._http3 import (
    BAD_CERTIFICATE,
    CERTIFICATE_REQUIRED,
    AltSvc,
    DualListener,
    Http3Listener,
    alt_svc,
    serve_http3,
)
from sealwire_tls._http3_client import MAX_BUFFERED, Http3Transport
from sealwire_tls._quic import MAX_QUIC_DATA, check_private_api

__all__ = [
    "BAD_CERTIFICATE",
    "CERTIFICATE_REQUIRED",
    "MAX_BUFFERED",
    "MAX_QUIC_DATA",
    "AltSvc",
    "DualListener",
    "Http3Listener",
    "Http3Transport",
    "alt_svc",
    "check_private_api",
    "serve_http3",
]
