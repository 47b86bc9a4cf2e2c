"""The fault proxy moved to the public :mod:`sealwire.testing.fault_proxy` (the managed
store suite uses it); tests import it from here as before."""

from sealwire.testing.fault_proxy import FaultProxy

__all__ = ["FaultProxy"]
