"""Proposals and Commit (RFC 9420 §12.1, §12.4).

:class:`Proposal` is the ``Proposal`` union: ``Proposal.decode`` reads the
``proposal_type`` and returns the matching subclass (:class:`Add`,
:class:`Update`, ...), whose ``encode`` writes the type back. A proposal type
this engine does not know cannot be delimited on the wire, so it is a
:class:`MLSDecodeError` (§13.2: unsupported types are never committed).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import ClassVar

from attrs import frozen

from sealwire_mls.codec import Reader, Writer
from sealwire_mls.errors import MLSDecodeError
from sealwire_mls.extensions import Extension, decode_extensions, encode_extensions
from sealwire_mls.keypackage import KeyPackage, LeafNode
from sealwire_mls.psk import PreSharedKeyID
from sealwire_mls.treekem import UpdatePath

__all__ = [
    "PROPOSAL_REF_LABEL",
    "Add",
    "Commit",
    "ExternalInit",
    "GroupContextExtensions",
    "PreSharedKey",
    "Proposal",
    "ProposalOrRefType",
    "ProposalRef",
    "ProposalType",
    "ReInit",
    "Remove",
    "Update",
]

#: RefHash label of a ProposalRef (§5.2), computed over the AuthenticatedContent.
PROPOSAL_REF_LABEL = b"MLS 1.0 Proposal Reference"


class ProposalType(IntEnum):
    """``uint16 ProposalType`` (§17.4, IANA "MLS Proposal Types")."""

    ADD = 0x0001
    UPDATE = 0x0002
    REMOVE = 0x0003
    PSK = 0x0004
    REINIT = 0x0005
    EXTERNAL_INIT = 0x0006
    GROUP_CONTEXT_EXTENSIONS = 0x0007


class Proposal:
    """The ``Proposal`` union (§12.1); concrete proposals subclass it.

    ``struct { ProposalType proposal_type; select (Proposal.proposal_type)
    { case add: Add; case update: Update; case remove: Remove; case psk:
    PreSharedKey; case reinit: ReInit; case external_init: ExternalInit;
    case group_context_extensions: GroupContextExtensions; }; } Proposal;``
    """

    __slots__ = ()
    proposal_type: ClassVar[ProposalType]

    def encode_body(self, w: Writer) -> None:
        """Write the body struct alone (e.g. ``Add``), without the type."""
        raise NotImplementedError

    @classmethod
    def decode_body(cls, r: Reader) -> Proposal:
        """Read the body struct of this subclass's type (e.g. ``Add``) alone."""
        return _DECODERS[cls.proposal_type](r)

    def encode(self, w: Writer) -> None:
        """Write the ``Proposal`` (type, then body)."""
        w.uint16(self.proposal_type)
        self.encode_body(w)

    def to_bytes(self) -> bytes:
        """The encoded ``Proposal``."""
        w = Writer()
        self.encode(w)
        return w.getvalue()

    @classmethod
    def decode(cls, r: Reader) -> Proposal:
        """Read a ``Proposal`` of any known type."""
        kind = r.uint16("proposal_type")
        body = _DECODERS.get(kind)
        if body is None:
            raise MLSDecodeError(f"unknown proposal type {kind}", field="proposal_type")
        return body(r)


@frozen
class Add(Proposal):
    """``struct { KeyPackage key_package; } Add;`` (§12.1.1)."""

    proposal_type: ClassVar[ProposalType] = ProposalType.ADD
    key_package: KeyPackage

    def encode_body(self, w: Writer) -> None:
        self.key_package.encode(w)


@frozen
class Update(Proposal):
    """``struct { LeafNode leaf_node; } Update;`` (§12.1.2)."""

    proposal_type: ClassVar[ProposalType] = ProposalType.UPDATE
    leaf_node: LeafNode

    def encode_body(self, w: Writer) -> None:
        self.leaf_node.encode(w)


@frozen
class Remove(Proposal):
    """``struct { uint32 removed; } Remove;`` (§12.1.3)."""

    proposal_type: ClassVar[ProposalType] = ProposalType.REMOVE
    removed: int

    def encode_body(self, w: Writer) -> None:
        w.uint32(self.removed)


@frozen
class PreSharedKey(Proposal):
    """``struct { PreSharedKeyID psk; } PreSharedKey;`` (§12.1.4)."""

    proposal_type: ClassVar[ProposalType] = ProposalType.PSK
    psk: PreSharedKeyID

    def encode_body(self, w: Writer) -> None:
        self.psk.encode(w)


@frozen(kw_only=True)
class ReInit(Proposal):
    """A ReInit proposal (§12.1.5).

    ``struct { opaque group_id<V>; ProtocolVersion version; CipherSuite
    cipher_suite; Extension extensions<V>; } ReInit;``
    """

    proposal_type: ClassVar[ProposalType] = ProposalType.REINIT
    group_id: bytes
    version: int
    cipher_suite: int
    extensions: tuple[Extension, ...] = ()

    def encode_body(self, w: Writer) -> None:
        w.opaque(self.group_id).uint16(self.version).uint16(self.cipher_suite)
        encode_extensions(w, self.extensions)


@frozen
class ExternalInit(Proposal):
    """``struct { opaque kem_output<V>; } ExternalInit;`` (§12.1.6)."""

    proposal_type: ClassVar[ProposalType] = ProposalType.EXTERNAL_INIT
    kem_output: bytes

    def encode_body(self, w: Writer) -> None:
        w.opaque(self.kem_output)


@frozen
class GroupContextExtensions(Proposal):
    """``struct { Extension extensions<V>; } GroupContextExtensions;`` (§12.1.7)."""

    proposal_type: ClassVar[ProposalType] = ProposalType.GROUP_CONTEXT_EXTENSIONS
    extensions: tuple[Extension, ...]

    def encode_body(self, w: Writer) -> None:
        encode_extensions(w, self.extensions)


def _reinit(r: Reader) -> ReInit:
    return ReInit(
        group_id=r.opaque("group_id"),
        version=r.uint16("version"),
        cipher_suite=r.uint16("cipher_suite"),
        extensions=decode_extensions(r),
    )


_DECODERS: dict[int, Callable[[Reader], Proposal]] = {
    ProposalType.ADD: lambda r: Add(KeyPackage.decode(r)),
    ProposalType.UPDATE: lambda r: Update(LeafNode.decode(r)),
    ProposalType.REMOVE: lambda r: Remove(r.uint32("removed")),
    ProposalType.PSK: lambda r: PreSharedKey(PreSharedKeyID.decode(r)),
    ProposalType.REINIT: _reinit,
    ProposalType.EXTERNAL_INIT: lambda r: ExternalInit(r.opaque("kem_output")),
    ProposalType.GROUP_CONTEXT_EXTENSIONS: lambda r: GroupContextExtensions(decode_extensions(r)),
}


class ProposalOrRefType(IntEnum):
    """``uint8 ProposalOrRefType`` (§12.4)."""

    PROPOSAL = 1
    REFERENCE = 2


@frozen
class ProposalRef:
    """``opaque ProposalRef<V>`` (§5.2): a RefHash of the AuthenticatedContent."""

    value: bytes


# struct {
#     ProposalOrRefType type;
#     select (ProposalOrRef.type) {
#         case proposal:  Proposal proposal;
#         case reference: ProposalRef reference;
#     };
# } ProposalOrRef;
def _encode_proposal_or_ref(w: Writer, item: Proposal | ProposalRef) -> None:
    if isinstance(item, ProposalRef):
        w.uint8(ProposalOrRefType.REFERENCE).opaque(item.value)
    else:
        w.uint8(ProposalOrRefType.PROPOSAL)
        item.encode(w)


def _decode_proposal_or_ref(r: Reader) -> Proposal | ProposalRef:
    kind = r.uint8("ProposalOrRef.type")
    if kind == ProposalOrRefType.PROPOSAL:
        return Proposal.decode(r)
    if kind == ProposalOrRefType.REFERENCE:
        return ProposalRef(r.opaque("reference"))
    raise MLSDecodeError(f"unknown ProposalOrRef type {kind}", field="ProposalOrRef.type")


@frozen(kw_only=True)
class Commit:
    """A ``Commit`` (§12.4): proposals by value or reference, and an optional path."""

    proposals: tuple[Proposal | ProposalRef, ...] = ()
    path: UpdatePath | None = None

    # struct {
    #     ProposalOrRef proposals<V>;
    #     optional<UpdatePath> path;
    # } Commit;
    def encode(self, w: Writer) -> None:
        """Write the ``Commit`` struct."""
        w.vector(self.proposals, _encode_proposal_or_ref)
        w.optional(self.path, lambda w2, p: p.encode(w2))

    def to_bytes(self) -> bytes:
        """The encoded ``Commit``."""
        w = Writer()
        self.encode(w)
        return w.getvalue()

    @classmethod
    def decode(cls, r: Reader) -> Commit:
        """Read a ``Commit`` struct."""
        proposals = tuple(r.vector(_decode_proposal_or_ref, "proposals"))
        return cls(proposals=proposals, path=r.optional(UpdatePath.decode, "path"))
