"""Adapters that put existing A2A agents behind Sealwire.

* :mod:`sealwire.adapters.a2a_sdk` (needs the ``a2a`` extra): an a2a-sdk
  ``AgentExecutor`` served by a Sealwire agent, and a2a-sdk clients calling
  through Sealwire bindings.
* :class:`Sidecar`: any A2A HTTP server behind Sealwire, with no code change.
"""

from sealwire.adapters._sidecar import PEER_HEADER, Sidecar

__all__ = ["PEER_HEADER", "Sidecar"]
