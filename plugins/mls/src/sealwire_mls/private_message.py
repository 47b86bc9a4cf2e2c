"""PrivateMessage protection (RFC 9420 §6.3): signed content encrypted with the
secret tree's key for the sender's generation, and the sender data (leaf,
generation, reuse guard) encrypted under the sender-data secret. A received
message's key is staged in the secret tree and committed only when decryption,
parsing and the signature all succeed, so a bad message changes no state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attrs import evolve, frozen

from sealwire_mls.codec import Reader, Writer, decode_exact
from sealwire_mls.content import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    FramedContentAuthData,
    Sender,
    SenderType,
    WireFormat,
    decode_content_body,
    encode_content_body,
    enum_value,
)
from sealwire_mls.crypto import CipherSuite
from sealwire_mls.errors import MLSDecodeError, MLSLocalError, MLSProtocolError
from sealwire_mls.schedule import GroupContext
from sealwire_mls.secret_tree import RatchetType, SecretTree, sender_data_key_nonce

__all__ = ["MAX_PADDING", "PrivateMessage", "protect_private", "unprotect_private"]

#: Largest zero padding a sender adds to a PrivateMessage (a policy bound on
#: our side; received padding is limited only by the message size).
MAX_PADDING = 1 << 16


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
        ctype = enum_value(ContentType, r.uint8("PrivateMessage.content_type"), "content_type")
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
