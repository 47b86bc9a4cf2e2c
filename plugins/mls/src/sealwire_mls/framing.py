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

This module gathers the three parts, each in its own module: the content and its
signature (:mod:`sealwire_mls.content`), PublicMessage protection
(:mod:`sealwire_mls.public_message`) and PrivateMessage protection
(:mod:`sealwire_mls.private_message`).
"""

from __future__ import annotations

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
    framed_content_tbs,
)
from sealwire_mls.private_message import MAX_PADDING as MAX_PADDING  # importable here before
from sealwire_mls.private_message import (
    PrivateMessage,
    protect_private,
    unprotect_private,
)
from sealwire_mls.public_message import PublicMessage, protect_public, unprotect_public

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
