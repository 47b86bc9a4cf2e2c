"""MLS credentials (RFC 9420 §5.3).

Sealwire members use a ``basic`` credential whose identity is the agent id
(the fingerprint of the agent's Ed25519 signing key, see
:mod:`sealwire.identity`). ``x509`` credentials are decoded and re-encoded
so that messages carrying them round-trip, but their validation (§5.3.1) is
the application's: :meth:`Credential.agent_id` is ``None`` for them.
"""

from __future__ import annotations

from enum import IntEnum

from attrs import frozen

from sealwire_mls.codec import Reader, Writer
from sealwire_mls.errors import MLSDecodeError

__all__ = ["BasicCredential", "Certificate", "Credential", "CredentialType"]


class CredentialType(IntEnum):
    """``uint16 CredentialType`` (§5.3, IANA "MLS Credential Types")."""

    BASIC = 0x0001
    X509 = 0x0002


@frozen
class BasicCredential:
    """A Sealwire member's ``basic`` credential: the agent id as identity (§5.3)."""

    agent_id: str

    def credential(self) -> Credential:
        """The wire :class:`Credential` (identity = the agent id in ASCII)."""
        return Credential.basic(self.agent_id.encode("ascii"))

    @classmethod
    def from_credential(cls, credential: Credential) -> BasicCredential | None:
        """The agent id carried by ``credential``, ``None`` if it is not a basic ASCII one."""
        agent_id = credential.agent_id()
        return None if agent_id is None else cls(agent_id)


@frozen
class Certificate:
    """One DER certificate of an ``x509`` credential."""

    cert_data: bytes

    # struct {
    #     opaque cert_data<V>;
    # } Certificate;
    def encode(self, w: Writer) -> None:
        """Write the ``Certificate`` struct."""
        w.opaque(self.cert_data)

    @classmethod
    def decode(cls, r: Reader) -> Certificate:
        """Read a ``Certificate`` struct."""
        return cls(r.opaque("cert_data"))


@frozen(kw_only=True)
class Credential:
    """A ``Credential`` (§5.3): ``identity`` for basic, ``certificates`` for x509."""

    credential_type: int
    identity: bytes = b""
    certificates: tuple[Certificate, ...] = ()

    @classmethod
    def basic(cls, identity: bytes) -> Credential:
        """A ``basic`` credential carrying ``identity`` as given."""
        return cls(credential_type=CredentialType.BASIC, identity=identity)

    @classmethod
    def for_agent(cls, agent_id: str) -> Credential:
        """The ``basic`` credential of a Sealwire agent: its agent id, ASCII."""
        return BasicCredential(agent_id).credential()

    def agent_id(self) -> str | None:
        """The agent id of a basic credential, ``None`` if not a valid ASCII basic identity."""
        if self.credential_type != CredentialType.BASIC:
            return None
        try:
            return self.identity.decode("ascii")
        except UnicodeDecodeError:
            return None

    # struct {
    #     CredentialType credential_type;
    #     select (Credential.credential_type) {
    #         case basic:
    #             opaque identity<V>;
    #         case x509:
    #             Certificate certificates<V>;
    #     };
    # } Credential;
    def encode(self, w: Writer) -> None:
        """Write the ``Credential`` struct."""
        w.uint16(self.credential_type)
        if self.credential_type == CredentialType.BASIC:
            w.opaque(self.identity)
        else:
            w.vector(self.certificates, lambda w2, c: c.encode(w2))

    @classmethod
    def decode(cls, r: Reader) -> Credential:
        """Read a ``Credential``; an unknown type cannot be delimited, so it is an error."""
        kind = r.uint16("credential_type")
        if kind == CredentialType.BASIC:
            return cls(credential_type=kind, identity=r.opaque("identity"))
        if kind == CredentialType.X509:
            certs = r.vector(Certificate.decode, "certificates")
            return cls(credential_type=kind, certificates=tuple(certs))
        raise MLSDecodeError(f"unknown credential type {kind}", field="credential_type")
