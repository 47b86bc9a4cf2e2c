"""The content of an MLS message and its signature (RFC 9420 §6, §6.1): the wire
format, content type and sender enums, :class:`FramedContent`, its
FramedContentTBS and :class:`FramedContentAuthData`, and :class:`AuthenticatedContent`
(signed content, before or after protection). Public and private protection are in
:mod:`sealwire_mls.public_message` and :mod:`sealwire_mls.private_message`;
:mod:`sealwire_mls.framing` gathers all three."""

from __future__ import annotations

import enum
from typing import Any

from attrs import field, frozen

from sealwire_mls.codec import Reader, Writer
from sealwire_mls.crypto import CipherSuite
from sealwire_mls.errors import MLSDecodeError, MLSLocalError
from sealwire_mls.proposals import Commit, Proposal
from sealwire_mls.schedule import MLS10, GroupContext

__all__ = [
    "AuthenticatedContent",
    "ContentType",
    "FramedContent",
    "FramedContentAuthData",
    "Sender",
    "SenderType",
    "WireFormat",
    "decode_content_body",
    "encode_content_body",
    "enum_value",
    "framed_content_tbs",
]


class WireFormat(enum.IntEnum):
    """``enum { reserved(0), mls_public_message(1), ..., (65535) } WireFormat;`` (§6)."""

    PUBLIC_MESSAGE = 1
    PRIVATE_MESSAGE = 2
    WELCOME = 3
    GROUP_INFO = 4
    KEY_PACKAGE = 5


class ContentType(enum.IntEnum):
    """``enum { reserved(0), application(1), proposal(2), commit(3), (255) } ContentType;``"""

    APPLICATION = 1
    PROPOSAL = 2
    COMMIT = 3


class SenderType(enum.IntEnum):
    """``enum { reserved(0), member(1), external(2), new_member_proposal(3),
    new_member_commit(4), (255) } SenderType;`` (§6)."""

    MEMBER = 1
    EXTERNAL = 2
    NEW_MEMBER_PROPOSAL = 3
    NEW_MEMBER_COMMIT = 4


def enum_value(kind: type[enum.IntEnum], value: int, name: str) -> Any:
    """``kind(value)``, or :class:`MLSDecodeError` naming ``name`` for an unknown value."""
    try:
        return kind(value)
    except ValueError:
        raise MLSDecodeError(f"unknown value {value}", field=name) from None


@frozen
class Sender:
    """Who sent a message (§6): a member leaf, an external sender index, or a new member."""

    sender_type: SenderType
    index: int = 0

    @classmethod
    def member(cls, leaf_index: int) -> Sender:
        """A group member at ``leaf_index``."""
        return cls(SenderType.MEMBER, leaf_index)

    # struct {
    #     SenderType sender_type;
    #     select (Sender.sender_type) {
    #         case member:              uint32 leaf_index;
    #         case external:            uint32 sender_index;
    #         case new_member_commit:
    #         case new_member_proposal: struct{};
    #     };
    # } Sender;
    def encode(self, w: Writer) -> None:
        """Append the §6 encoding."""
        w.uint8(self.sender_type)
        if self.sender_type in (SenderType.MEMBER, SenderType.EXTERNAL):
            w.uint32(self.index)

    @classmethod
    def decode(cls, r: Reader) -> Sender:
        """Read one Sender."""
        kind = enum_value(SenderType, r.uint8("Sender.sender_type"), "Sender.sender_type")
        if kind in (SenderType.MEMBER, SenderType.EXTERNAL):
            return cls(kind, r.uint32("Sender.index"))
        return cls(kind)


def encode_content_body(w: Writer, content_type: ContentType, content: Any) -> None:
    """Append application data (``opaque<V>``), a Proposal or a Commit."""
    if content_type is ContentType.APPLICATION:
        w.opaque(content)
    else:
        content.encode(w)


def decode_content_body(r: Reader, content_type: ContentType) -> Any:
    """Read the body selected by ``content_type``."""
    if content_type is ContentType.APPLICATION:
        return r.opaque("application_data")
    if content_type is ContentType.PROPOSAL:
        return Proposal.decode(r)
    return Commit.decode(r)


@frozen(kw_only=True)
class FramedContent:
    """The content of a message before protection (§6).

    ``content`` is ``bytes`` (application data), a Proposal or a Commit.
    """

    group_id: bytes
    epoch: int
    sender: Sender
    authenticated_data: bytes = b""
    content_type: ContentType
    content: Any
    # The encoding, made once: a commit's content goes into its signature, its
    # membership tag, the transcript hash and the wire. A decoded content keeps
    # the bytes it was read from (the codec's encoding is canonical: minimal
    # varints, strict enums), so a receiver does not re-encode it either.
    _encoded: bytes | None = field(default=None, init=False, eq=False, repr=False)

    # struct {
    #     opaque group_id<V>;
    #     uint64 epoch;
    #     Sender sender;
    #     opaque authenticated_data<V>;
    #     ContentType content_type;
    #     select (FramedContent.content_type) {
    #         case application: opaque application_data<V>;
    #         case proposal:    Proposal proposal;
    #         case commit:      Commit commit;
    #     };
    # } FramedContent;
    def encode(self, w: Writer) -> None:
        """Append the §6 encoding."""
        w.fixed(self.to_bytes())

    def to_bytes(self) -> bytes:
        """The §6 encoding (computed once per object)."""
        encoded = self._encoded
        if encoded is None:
            w = Writer().opaque(self.group_id).uint64(self.epoch)
            self.sender.encode(w)
            w.opaque(self.authenticated_data).uint8(self.content_type)
            encode_content_body(w, self.content_type, self.content)
            encoded = w.getvalue()
            object.__setattr__(self, "_encoded", encoded)
        return encoded

    @classmethod
    def decode(cls, r: Reader) -> FramedContent:
        """Read one FramedContent (remembering the bytes it was read from)."""
        start = r.position
        content = cls._decode_fields(r)
        object.__setattr__(content, "_encoded", r.since(start))
        return content

    @classmethod
    def _decode_fields(cls, r: Reader) -> FramedContent:
        group_id = r.opaque("FramedContent.group_id")
        epoch = r.uint64("FramedContent.epoch")
        sender = Sender.decode(r)
        aad = r.opaque("FramedContent.authenticated_data")
        ctype = enum_value(ContentType, r.uint8("FramedContent.content_type"), "content_type")
        return cls(
            group_id=group_id,
            epoch=epoch,
            sender=sender,
            authenticated_data=aad,
            content_type=ctype,
            content=decode_content_body(r, ctype),
        )


@frozen
class FramedContentAuthData:
    """The signature and, for commits, the confirmation tag (§6.1)."""

    signature: bytes
    confirmation_tag: bytes | None = None

    # struct {
    #     /* SignWithLabel(., "FramedContentTBS", FramedContentTBS) */
    #     opaque signature<V>;
    #     select (FramedContent.content_type) {
    #         case commit:      MAC confirmation_tag;
    #         case application:
    #         case proposal:    struct{};
    #     };
    # } FramedContentAuthData;
    def encode(self, w: Writer, content_type: ContentType) -> None:
        """Append the §6.1 encoding (its shape depends on ``content_type``)."""
        w.opaque(self.signature)
        if content_type is ContentType.COMMIT:
            if self.confirmation_tag is None:
                raise MLSLocalError("a commit needs a confirmation tag")
            w.opaque(self.confirmation_tag)

    @classmethod
    def decode(cls, r: Reader, content_type: ContentType) -> FramedContentAuthData:
        """Read one FramedContentAuthData for ``content_type``."""
        signature = r.opaque("FramedContentAuthData.signature")
        tag = None
        if content_type is ContentType.COMMIT:
            tag = r.opaque("FramedContentAuthData.confirmation_tag")
        return cls(signature, tag)


def framed_content_tbs(
    wire_format: WireFormat, content: FramedContent, context: GroupContext | None
) -> bytes:
    """The encoded FramedContentTBS (§6.1).

    ::

        struct {
            ProtocolVersion version = mls10;
            WireFormat wire_format;
            FramedContent content;
            select (FramedContentTBS.content.sender.sender_type) {
                case member:
                case new_member_commit:   GroupContext context;
                case external:
                case new_member_proposal: struct{};
            };
        } FramedContentTBS;
    """
    w = Writer().uint16(MLS10).uint16(wire_format)
    content.encode(w)
    if content.sender.sender_type in (SenderType.MEMBER, SenderType.NEW_MEMBER_COMMIT):
        if context is None:
            raise MLSLocalError("this sender type signs over the GroupContext")
        context.encode(w)
    return w.getvalue()


@frozen(kw_only=True)
class AuthenticatedContent:
    """Signed content, before (or after) PublicMessage/PrivateMessage protection (§6.1)."""

    wire_format: WireFormat
    content: FramedContent
    auth: FramedContentAuthData

    # struct {
    #     WireFormat wire_format;
    #     FramedContent content;
    #     FramedContentAuthData auth;
    # } AuthenticatedContent;
    def encode(self, w: Writer) -> None:
        """Append the §6.1 encoding."""
        w.uint16(self.wire_format)
        self.content.encode(w)
        self.auth.encode(w, self.content.content_type)

    @classmethod
    def decode(cls, r: Reader) -> AuthenticatedContent:
        """Read one AuthenticatedContent."""
        wire = enum_value(WireFormat, r.uint16("AuthenticatedContent.wire_format"), "wire_format")
        if wire not in (WireFormat.PUBLIC_MESSAGE, WireFormat.PRIVATE_MESSAGE):
            raise MLSDecodeError("not a framed wire format", field="wire_format")
        content = FramedContent.decode(r)
        auth = FramedContentAuthData.decode(r, content.content_type)
        return cls(wire_format=wire, content=content, auth=auth)

    def to_bytes(self) -> bytes:
        """The encoded AuthenticatedContent."""
        w = Writer()
        self.encode(w)
        return w.getvalue()

    @classmethod
    def sign(
        cls,
        suite: CipherSuite,
        wire_format: WireFormat,
        content: FramedContent,
        signature_priv: bytes,
        context: GroupContext | None,
        confirmation_tag: bytes | None = None,
    ) -> AuthenticatedContent:
        """Sign ``content`` (§6.1); a commit's ``confirmation_tag`` is added after signing."""
        tbs = framed_content_tbs(wire_format, content, context)
        signature = suite.sign_with_label(signature_priv, b"FramedContentTBS", tbs)
        auth = FramedContentAuthData(signature, confirmation_tag)
        return cls(wire_format=wire_format, content=content, auth=auth)

    def verify(
        self, suite: CipherSuite, signature_pub: bytes, context: GroupContext | None
    ) -> None:
        """Verify the signature (§6.1); :class:`MLSAuthenticationError` if it fails."""
        tbs = framed_content_tbs(self.wire_format, self.content, context)
        suite.verify_with_label(signature_pub, b"FramedContentTBS", tbs, self.auth.signature)
