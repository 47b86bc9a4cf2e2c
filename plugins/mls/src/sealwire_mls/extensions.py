"""MLS extensions and capabilities (RFC 9420 §7.2, §13).

An :class:`Extension` is an opaque typed blob; the typed payloads MLS
defines (``required_capabilities`` §11.1, ``external_senders`` §12.1.8.1,
``external_pub`` §12.4.3.2) have their own structs here. The
``ratchet_tree`` payload (§12.4.3.3) lives in :mod:`sealwire_mls.tree`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import IntEnum

from attrs import frozen

from sealwire_mls.codec import Reader, Writer, decode_exact
from sealwire_mls.credentials import Credential
from sealwire_mls.errors import MLSProtocolError

__all__ = [
    "DEFAULT_EXTENSION_TYPES",
    "DEFAULT_PROPOSAL_TYPES",
    "PROTOCOL_VERSION_MLS10",
    "Capabilities",
    "Extension",
    "ExtensionType",
    "ExternalPub",
    "ExternalSender",
    "RequiredCapabilities",
    "check_unique_extensions",
    "decode_extensions",
    "decode_external_senders",
    "encode_extensions",
    "encode_external_senders",
    "find_extension",
]

#: ``ProtocolVersion mls10`` (§6).
PROTOCOL_VERSION_MLS10 = 1


class ExtensionType(IntEnum):
    """``uint16 ExtensionType`` (§17.3, IANA "MLS Extension Types")."""

    APPLICATION_ID = 0x0001
    RATCHET_TREE = 0x0002
    REQUIRED_CAPABILITIES = 0x0003
    EXTERNAL_PUB = 0x0004
    EXTERNAL_SENDERS = 0x0005


#: Extension types every client supports; they MUST NOT be listed in Capabilities (§7.2).
DEFAULT_EXTENSION_TYPES = frozenset(int(t) for t in ExtensionType)
#: Proposal types 1..7 are default (§7.2); see :class:`sealwire_mls.proposals.ProposalType`.
DEFAULT_PROPOSAL_TYPES = frozenset(range(1, 8))


@frozen
class Extension:
    """One ``Extension`` (§7.2): a type and its opaque ``extension_data``."""

    extension_type: int
    extension_data: bytes

    # struct {
    #     ExtensionType extension_type;
    #     opaque extension_data<V>;
    # } Extension;
    def encode(self, w: Writer) -> None:
        """Write the ``Extension`` struct."""
        w.uint16(self.extension_type).opaque(self.extension_data)

    @classmethod
    def decode(cls, r: Reader) -> Extension:
        """Read an ``Extension`` struct."""
        return cls(r.uint16("extension_type"), r.opaque("extension_data"))


def encode_extensions(w: Writer, extensions: Iterable[Extension]) -> None:
    """Write ``Extension extensions<V>``."""
    w.vector(extensions, lambda w2, e: e.encode(w2))


def decode_extensions(r: Reader, field: str = "extensions") -> tuple[Extension, ...]:
    """Read ``Extension extensions<V>`` (validation is :func:`check_unique_extensions`)."""
    return tuple(r.vector(Extension.decode, field))


def check_unique_extensions(extensions: Sequence[Extension], field: str = "extensions") -> None:
    """Raise :class:`MLSProtocolError` if an extension type repeats (§13.4)."""
    if len({e.extension_type for e in extensions}) != len(extensions):
        raise MLSProtocolError(f"{field}: duplicate extension type")


def find_extension(extensions: Sequence[Extension], extension_type: int) -> Extension | None:
    """The extension of ``extension_type`` in ``extensions``, if any."""
    for ext in extensions:
        if ext.extension_type == extension_type:
            return ext
    return None


def _u16s(r: Reader, field: str) -> tuple[int, ...]:
    return r.uint16_vector(field)


def _put_u16s(w: Writer, values: Iterable[int]) -> None:
    w.vector(values, lambda w2, v: w2.uint16(v))


@frozen(kw_only=True)
class Capabilities:
    """A LeafNode's ``Capabilities`` (§7.2); unknown values are kept and ignored (§13)."""

    versions: tuple[int, ...] = (PROTOCOL_VERSION_MLS10,)
    cipher_suites: tuple[int, ...] = ()
    extensions: tuple[int, ...] = ()
    proposals: tuple[int, ...] = ()
    credentials: tuple[int, ...] = ()

    # struct {
    #     ProtocolVersion versions<V>;
    #     CipherSuite cipher_suites<V>;
    #     ExtensionType extensions<V>;
    #     ProposalType proposals<V>;
    #     CredentialType credentials<V>;
    # } Capabilities;
    def encode(self, w: Writer) -> None:
        """Write the ``Capabilities`` struct."""
        for values in (
            self.versions,
            self.cipher_suites,
            self.extensions,
            self.proposals,
            self.credentials,
        ):
            _put_u16s(w, values)

    @classmethod
    def decode(cls, r: Reader) -> Capabilities:
        """Read a ``Capabilities`` struct."""
        return cls(
            versions=_u16s(r, "versions"),
            cipher_suites=_u16s(r, "cipher_suites"),
            extensions=_u16s(r, "extensions"),
            proposals=_u16s(r, "proposals"),
            credentials=_u16s(r, "credentials"),
        )

    def supports_extension(self, extension_type: int) -> bool:
        """Whether ``extension_type`` is default or listed."""
        return extension_type in DEFAULT_EXTENSION_TYPES or extension_type in self.extensions

    def supports_proposal(self, proposal_type: int) -> bool:
        """Whether ``proposal_type`` is default or listed."""
        return proposal_type in DEFAULT_PROPOSAL_TYPES or proposal_type in self.proposals


@frozen(kw_only=True)
class RequiredCapabilities:
    """The ``required_capabilities`` GroupContext extension (§11.1)."""

    extension_types: tuple[int, ...] = ()
    proposal_types: tuple[int, ...] = ()
    credential_types: tuple[int, ...] = ()

    # struct {
    #     ExtensionType extension_types<V>;
    #     ProposalType proposal_types<V>;
    #     CredentialType credential_types<V>;
    # } RequiredCapabilities;
    def encode(self, w: Writer) -> None:
        """Write the ``RequiredCapabilities`` struct."""
        _put_u16s(w, self.extension_types)
        _put_u16s(w, self.proposal_types)
        _put_u16s(w, self.credential_types)

    @classmethod
    def decode(cls, r: Reader) -> RequiredCapabilities:
        """Read a ``RequiredCapabilities`` struct."""
        return cls(
            extension_types=_u16s(r, "extension_types"),
            proposal_types=_u16s(r, "proposal_types"),
            credential_types=_u16s(r, "credential_types"),
        )

    def satisfied_by(self, caps: Capabilities) -> bool:
        """Whether a member with ``caps`` supports everything required (§7.3)."""
        return (
            all(caps.supports_extension(t) for t in self.extension_types)
            and all(caps.supports_proposal(t) for t in self.proposal_types)
            and all(t in caps.credentials for t in self.credential_types)
        )

    def to_extension(self) -> Extension:
        """This value as a GroupContext extension."""
        w = Writer()
        self.encode(w)
        return Extension(ExtensionType.REQUIRED_CAPABILITIES, w.getvalue())

    @classmethod
    def from_extension(cls, ext: Extension) -> RequiredCapabilities:
        """Decode the payload of a ``required_capabilities`` extension."""
        return decode_exact(ext.extension_data, cls.decode, "required_capabilities")


@frozen
class ExternalSender:
    """One entry of the ``external_senders`` extension (§12.1.8.1)."""

    signature_key: bytes
    credential: Credential

    # struct {
    #     SignaturePublicKey signature_key;
    #     Credential credential;
    # } ExternalSender;
    def encode(self, w: Writer) -> None:
        """Write the ``ExternalSender`` struct."""
        w.opaque(self.signature_key)
        self.credential.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> ExternalSender:
        """Read an ``ExternalSender`` struct."""
        return cls(r.opaque("signature_key"), Credential.decode(r))


def encode_external_senders(senders: Sequence[ExternalSender]) -> Extension:
    """``ExternalSender external_senders<V>`` as an ``external_senders`` extension."""
    w = Writer().vector(senders, lambda w2, s: s.encode(w2))
    return Extension(ExtensionType.EXTERNAL_SENDERS, w.getvalue())


def decode_external_senders(ext: Extension) -> tuple[ExternalSender, ...]:
    """The senders listed in an ``external_senders`` extension."""
    senders = decode_exact(
        ext.extension_data, lambda r: r.vector(ExternalSender.decode, "external_senders")
    )
    return tuple(senders)


@frozen
class ExternalPub:
    """The ``external_pub`` GroupInfo extension (§12.4.3.2)."""

    external_pub: bytes

    # struct {
    #     HPKEPublicKey external_pub;
    # } ExternalPub;
    def to_extension(self) -> Extension:
        """This value as a GroupInfo extension."""
        return Extension(ExtensionType.EXTERNAL_PUB, Writer().opaque(self.external_pub).getvalue())

    @classmethod
    def from_extension(cls, ext: Extension) -> ExternalPub:
        """Decode the payload of an ``external_pub`` extension."""
        return cls(decode_exact(ext.extension_data, lambda r: r.opaque("external_pub")))
