"""The MLS binding against the public group contract suite (a loopback relay from
sealwire-relay's pytest plugin)."""

from __future__ import annotations

from sealwire.testing.group_contract import GroupBindingContract
from sealwire_mls import MlsBinding


class TestMlsContract(GroupBindingContract):
    binding_class = MlsBinding
