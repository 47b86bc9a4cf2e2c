"""PublicMessage protection (RFC 9420 §6.2): signed content sent in the clear, with a
membership tag for members; :func:`protect_public` wraps, :func:`unprotect_public`
checks group, epoch, tag and signature before returning the content."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from attrs import field, frozen

from sealwire_mls.codec import Reader, Writer
from sealwire_mls.content import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    FramedContentAuthData,
    Sender,
    SenderType,
    WireFormat,
    framed_content_tbs,
)
from sealwire_mls.crypto import CipherSuite
from sealwire_mls.errors import MLSAuthenticationError, MLSLocalError, MLSProtocolError
from sealwire_mls.schedule import GroupContext

__all__ = ["PublicMessage", "protect_public", "unprotect_public"]


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
