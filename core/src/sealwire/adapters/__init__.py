"""Adapters that put existing A2A agents behind Sealwire (ARCHITECTURE layer 10).

* :mod:`sealwire.adapters.a2a_sdk` (needs the ``a2a`` extra): an a2a-sdk
  ``AgentExecutor`` served by a Sealwire agent, and a2a-sdk clients calling
  through Sealwire bindings.
* :class:`Sidecar`: any A2A HTTP server behind Sealwire, with no code change
  (``sealwire sidecar`` on the command line).
"""

from sealwire.adapters._sidecar import MAX_UPSTREAM_CHANNELS, PEER_HEADER, PEERS_PREFIX, Sidecar

__all__ = ["MAX_UPSTREAM_CHANNELS", "PEERS_PREFIX", "PEER_HEADER", "Sidecar"]
