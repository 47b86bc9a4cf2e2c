"""Test support shipped with core (``sealwire[testing]``): the vector loader and the
contract suites, one per shape of plugin.

* :mod:`~sealwire.testing.contract`: session and datagram bindings;
* :mod:`~sealwire.testing.mailbox_contract`, :mod:`~sealwire.testing.group_contract`:
  mailbox and group bindings (on ``sealwire-relay[testing]``'s loopback relay);
* :mod:`~sealwire.testing.transport_contract`: stream transports;
* :mod:`~sealwire.testing.store_contract`: state stores, and
  :mod:`~sealwire.testing.managed_store_contract` for stores built on
  ``ManagedStore`` against their manager (with its :mod:`~sealwire.testing.fault_proxy`
  and :mod:`~sealwire.testing.store_writer` process);
* :mod:`~sealwire.testing.ports`: loopback ports no other socket takes meanwhile.
"""
