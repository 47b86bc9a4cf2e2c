"""The Signal binding against the public mailbox contract suite (a loopback relay from
sealwire-relay's pytest plugin)."""

from __future__ import annotations

from sealwire.testing.mailbox_contract import MailboxBindingContract
from sealwire_signal import SignalBinding


class TestSignalContract(MailboxBindingContract):
    binding_class = SignalBinding


class TestSignalHeaderEncryptionContract(MailboxBindingContract):
    binding_class = SignalBinding
    options = {"header_encryption": True}  # noqa: RUF012
