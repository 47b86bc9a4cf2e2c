"""Message framing (RFC 9420 §6): FramedContent, its signature and the two
protected forms, PublicMessage (signed + membership tag, §6.2) and
PrivateMessage (signed, then encrypted with the secret tree, §6.3).

Rules of this module:

* Decoding never verifies; :func:`unprotect_public` and
  :func:`unprotect_private` verify tags and signatures and only then return
  the content. Verification failures raise :class:`MLSAuthenticationError`.
* A PrivateMessage's key is staged in the secret tree and committed only
  when decryption, parsing and the signature all succeed, so a bad message
  changes no state.
* Proposal and Commit bodies are the structs of :mod:`sealwire_mls.proposals`.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable
from typing import Any

from attrs import evolve, field, frozen

from sealwire_mls.codec import Reader, Writer, decode_exact
from sealwire_mls.crypto import CipherSuite
from sealwire_mls.errors import (
    MLSAuthenticationError,
    MLSDecodeError,
    MLSLocalError,
    MLSProtocolError,
)
from sealwire_mls.proposals import Commit, Proposal
from sealwire_mls.schedule import MLS10, GroupContext
from sealwire_mls.secret_tree import RatchetType, SecretTree, sender_data_key_nonce

__all__ = [
    "AuthenticatedContent",
    "ContentType",
    "FramedContent",
    "FramedContentAuthData",
    "PrivateMessage",
    "PublicMessage",
    "Sender",
    "SenderType",
    "WireFormat",
    "decode_content_body",
    "encode_content_body",
    "framed_content_tbs",
    "protect_private",
    "protect_public",
    "unprotect_private",
    "unprotect_public",
]

#: Largest zero padding a sender adds to a PrivateMessage (a policy bound on
#: our side; received padding is limited only by the message size).
MAX_PADDING = 1 << 16


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


def _enum(kind: type[enum.IntEnum], value: int, name: str) -> Any:
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
        kind = _enum(SenderType, r.uint8("Sender.sender_type"), "Sender.sender_type")
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
        ctype = _enum(ContentType, r.uint8("FramedContent.content_type"), "content_type")
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
        wire = _enum(WireFormat, r.uint16("AuthenticatedContent.wire_format"), "wire_format")
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


@frozen(kw_only=True)
class PublicMessage:
    """A signed, unencrypted handshake message (§6.2)."""

    content: FramedContent
    auth: FramedContentAuthData
    membership_tag: bytes | None = field(default=None)

    # struct {
    #     FramedContent content;
    #     FramedContentAuthData auth;
    #     select (PublicMessage.content.sender.sender_type) {
    #         case member:              MAC membership_tag;
    #         case external:
    #         case new_member_commit:
    #         case new_member_proposal: struct{};
    #     };
    # } PublicMessage;
    def encode(self, w: Writer) -> None:
        """Append the §6.2 encoding."""
        self.content.encode(w)
        self.auth.encode(w, self.content.content_type)
        if self.content.sender.sender_type is SenderType.MEMBER:
            if self.membership_tag is None:
                raise MLSLocalError("a member's PublicMessage needs a membership tag")
            w.opaque(self.membership_tag)

    @classmethod
    def decode(cls, r: Reader) -> PublicMessage:
        """Read one PublicMessage."""
        content = FramedContent.decode(r)
        auth = FramedContentAuthData.decode(r, content.content_type)
        tag = None
        if content.sender.sender_type is SenderType.MEMBER:
            tag = r.opaque("PublicMessage.membership_tag")
        return cls(content=content, auth=auth, membership_tag=tag)

    def authenticated_content(self) -> AuthenticatedContent:
        """The AuthenticatedContent this message carries."""
        return AuthenticatedContent(
            wire_format=WireFormat.PUBLIC_MESSAGE, content=self.content, auth=self.auth
        )


def _membership_tag(
    suite: CipherSuite, membership_key: bytes, ac: AuthenticatedContent, context: GroupContext
) -> bytes:
    # struct {
    #   FramedContentTBS content_tbs;
    #   FramedContentAuthData auth;
    # } AuthenticatedContentTBM;
    w = Writer().fixed(framed_content_tbs(ac.wire_format, ac.content, context))
    ac.auth.encode(w, ac.content.content_type)
    return suite.mac(membership_key, w.getvalue())


def protect_public(
    suite: CipherSuite,
    ac: AuthenticatedContent,
    context: GroupContext,
    membership_key: bytes | None,
) -> PublicMessage:
    """Wrap signed content as a PublicMessage (§6.2), adding the membership tag for members.

    Application data is never sent as a PublicMessage.
    """
    if ac.content.content_type is ContentType.APPLICATION:
        raise MLSLocalError("application data must be sent as a PrivateMessage")
    if ac.wire_format is not WireFormat.PUBLIC_MESSAGE:
        raise MLSLocalError("content was signed for another wire format")
    tag = None
    if ac.content.sender.sender_type is SenderType.MEMBER:
        if membership_key is None:
            raise MLSLocalError("a member's PublicMessage needs the membership key")
        tag = _membership_tag(suite, membership_key, ac, context)
    return PublicMessage(content=ac.content, auth=ac.auth, membership_tag=tag)


def unprotect_public(
    suite: CipherSuite,
    message: PublicMessage,
    context: GroupContext,
    membership_key: bytes | None,
    signature_pub: Callable[[Sender], bytes] | bytes,
) -> AuthenticatedContent:
    """Verify a PublicMessage (§6.2): group, epoch, membership tag, then signature.

    ``signature_pub`` is the sender's key, or a function from the Sender to it.
    """
    content = message.content
    if content.content_type is ContentType.APPLICATION:
        raise MLSProtocolError("application data in a PublicMessage")
    if content.group_id != context.group_id or content.epoch != context.epoch:
        raise MLSProtocolError("PublicMessage for another group or epoch")
    ac = message.authenticated_content()
    if content.sender.sender_type is SenderType.MEMBER:
        if membership_key is None or message.membership_tag is None:
            raise MLSAuthenticationError()
        expected = _membership_tag(suite, membership_key, ac, context)
        if not hmac.compare_digest(expected, message.membership_tag):
            raise MLSAuthenticationError()
    key = signature_pub if isinstance(signature_pub, bytes) else signature_pub(content.sender)
    ac.verify(suite, key, context)
    return ac


@frozen(kw_only=True)
class PrivateMessage:
    """An encrypted message (§6.3); only group, epoch, type and AAD are visible."""

    group_id: bytes
    epoch: int
    content_type: ContentType
    authenticated_data: bytes
    encrypted_sender_data: bytes
    ciphertext: bytes

    # struct {
    #     opaque group_id<V>;
    #     uint64 epoch;
    #     ContentType content_type;
    #     opaque authenticated_data<V>;
    #     opaque encrypted_sender_data<V>;
    #     opaque ciphertext<V>;
    # } PrivateMessage;
    def encode(self, w: Writer) -> None:
        """Append the §6.3 encoding."""
        w.fixed(self._aad()).opaque(self.encrypted_sender_data).opaque(self.ciphertext)

    @classmethod
    def decode(cls, r: Reader) -> PrivateMessage:
        """Read one PrivateMessage."""
        group_id = r.opaque("PrivateMessage.group_id")
        epoch = r.uint64("PrivateMessage.epoch")
        ctype = _enum(ContentType, r.uint8("PrivateMessage.content_type"), "content_type")
        return cls(
            group_id=group_id,
            epoch=epoch,
            content_type=ctype,
            authenticated_data=r.opaque("PrivateMessage.authenticated_data"),
            encrypted_sender_data=r.opaque("PrivateMessage.encrypted_sender_data"),
            ciphertext=r.opaque("PrivateMessage.ciphertext"),
        )

    def _aad(self) -> bytes:
        # struct {
        #     opaque group_id<V>;
        #     uint64 epoch;
        #     ContentType content_type;
        #     opaque authenticated_data<V>;
        # } PrivateContentAAD;
        w = Writer().opaque(self.group_id).uint64(self.epoch).uint8(self.content_type)
        return w.opaque(self.authenticated_data).getvalue()

    def _sender_data_aad(self) -> bytes:
        # struct { opaque group_id<V>; uint64 epoch; ContentType content_type; } SenderDataAAD;
        return Writer().opaque(self.group_id).uint64(self.epoch).uint8(self.content_type).getvalue()


def _ratchet_type(content_type: ContentType) -> RatchetType:
    if content_type is ContentType.APPLICATION:
        return RatchetType.APPLICATION
    return RatchetType.HANDSHAKE


def _guarded(nonce: bytes, reuse_guard: bytes) -> bytes:
    # §6.3.1: XOR the first four bytes of the nonce with the reuse guard.
    head = bytes(a ^ b for a, b in zip(nonce[:4], reuse_guard, strict=True))
    return head + nonce[4:]


def protect_private(
    suite: CipherSuite,
    ac: AuthenticatedContent,
    tree: SecretTree,
    sender_data_secret: bytes,
    random: Callable[[int], bytes],
    padding: int = 0,
) -> PrivateMessage:
    """Encrypt signed content as a PrivateMessage (§6.3) with ``padding`` zero bytes.

    ``random(n)`` supplies the 4-byte reuse guard. The sender's ratchet
    generation is consumed.
    """
    content = ac.content
    if content.sender.sender_type is not SenderType.MEMBER:
        raise MLSLocalError("only members send PrivateMessages")
    if ac.wire_format is not WireFormat.PRIVATE_MESSAGE or not 0 <= padding <= MAX_PADDING:
        raise MLSLocalError("wrong wire format or padding")
    staged = tree.stage_send(content.sender.index, _ratchet_type(content.content_type))
    reuse_guard = random(4)
    # struct {
    #     select (PrivateMessage.content_type) { ... application_data / proposal / commit };
    #     FramedContentAuthData auth;
    #     opaque padding[length_of_padding];
    # } PrivateMessageContent;
    w = Writer()
    encode_content_body(w, content.content_type, content.content)
    ac.auth.encode(w, content.content_type)
    plaintext = w.fixed(bytes(padding)).getvalue()
    message = PrivateMessage(
        group_id=content.group_id,
        epoch=content.epoch,
        content_type=content.content_type,
        authenticated_data=content.authenticated_data,
        encrypted_sender_data=b"",
        ciphertext=b"",
    )
    nonce = _guarded(staged.nonce, reuse_guard)
    ciphertext = suite.aead_encrypt(staged.key, nonce, message._aad(), plaintext)
    # struct { uint32 leaf_index; uint32 generation; opaque reuse_guard[4]; } SenderData;
    sender_data = Writer().uint32(content.sender.index).uint32(staged.generation)
    key, sd_nonce = sender_data_key_nonce(suite, sender_data_secret, ciphertext)
    encrypted = suite.aead_encrypt(
        key, sd_nonce, message._sender_data_aad(), sender_data.fixed(reuse_guard).getvalue()
    )
    tree.commit(staged)
    return evolve(message, encrypted_sender_data=encrypted, ciphertext=ciphertext)


def _decode_sender_data(r: Reader) -> tuple[int, int, bytes]:
    return r.uint32("SenderData.leaf_index"), r.uint32("SenderData.generation"), r.fixed(4)


def _decode_private_content(data: bytes, ctype: ContentType) -> tuple[Any, FramedContentAuthData]:
    r = Reader(data)
    body = decode_content_body(r, ctype)
    auth = FramedContentAuthData.decode(r, ctype)
    if any(r.fixed(r.remaining(), "padding")):
        raise MLSDecodeError("non-zero padding", field="PrivateMessageContent.padding")
    return body, auth


def unprotect_private(
    suite: CipherSuite,
    message: PrivateMessage,
    context: GroupContext,
    tree: SecretTree,
    sender_data_secret: bytes,
    signature_pub: Callable[[Sender], bytes] | bytes,
) -> AuthenticatedContent:
    """Decrypt and verify a PrivateMessage (§6.3); the tree changes only on success.

    ``signature_pub`` is the sender's key, or a function from the Sender to it
    (which should raise for a blank or unknown leaf).
    """
    if message.group_id != context.group_id or message.epoch != context.epoch:
        raise MLSProtocolError("PrivateMessage for another group or epoch")
    key, nonce = sender_data_key_nonce(suite, sender_data_secret, message.ciphertext)
    sender_data = suite.aead_decrypt(
        key, nonce, message._sender_data_aad(), message.encrypted_sender_data
    )
    leaf, generation, reuse_guard = decode_exact(sender_data, _decode_sender_data, "SenderData")
    staged = tree.stage_receive(leaf, _ratchet_type(message.content_type), generation)
    plaintext = suite.aead_decrypt(
        staged.key, _guarded(staged.nonce, reuse_guard), message._aad(), message.ciphertext
    )
    body, auth = _decode_private_content(plaintext, message.content_type)
    content = FramedContent(
        group_id=message.group_id,
        epoch=message.epoch,
        sender=Sender.member(leaf),
        authenticated_data=message.authenticated_data,
        content_type=message.content_type,
        content=body,
    )
    ac = AuthenticatedContent(wire_format=WireFormat.PRIVATE_MESSAGE, content=content, auth=auth)
    pub = signature_pub if isinstance(signature_pub, bytes) else signature_pub(content.sender)
    ac.verify(suite, pub, context)
    tree.commit(staged)
    return ac
