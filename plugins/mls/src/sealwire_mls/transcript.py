"""Transcript hashes and the confirmation tag (RFC 9420 §8.2, §6.1).

::

    confirmed_transcript_hash_[epoch] =
        Hash(interim_transcript_hash_[epoch - 1] ||
             ConfirmedTranscriptHashInput_[epoch]);

    interim_transcript_hash_[epoch] =
        Hash(confirmed_transcript_hash_[epoch] ||
             InterimTranscriptHashInput_[epoch]);

    confirmation_tag = MAC(confirmation_key, confirmed_transcript_hash)
"""

from __future__ import annotations

import hmac

from sealwire_mls.codec import Writer
from sealwire_mls.crypto import CipherSuite
from sealwire_mls.errors import MLSAuthenticationError, MLSLocalError
from sealwire_mls.framing import AuthenticatedContent, ContentType

__all__ = [
    "confirmation_tag",
    "confirmed_transcript_hash",
    "interim_transcript_hash",
    "verify_confirmation_tag",
]


def confirmed_transcript_hash(
    suite: CipherSuite, interim_before: bytes, commit: AuthenticatedContent
) -> bytes:
    """The new epoch's confirmed transcript hash from the commit's AuthenticatedContent.

    ::

        struct {
            WireFormat wire_format;
            FramedContent content; /* with content_type == commit */
            opaque signature<V>;
        } ConfirmedTranscriptHashInput;
    """
    if commit.content.content_type is not ContentType.COMMIT:
        raise MLSLocalError("the transcript covers commits only")
    w = Writer().uint16(commit.wire_format)
    commit.content.encode(w)
    w.opaque(commit.auth.signature)
    return suite.hash(interim_before + w.getvalue())


def interim_transcript_hash(suite: CipherSuite, confirmed: bytes, confirmation_tag: bytes) -> bytes:
    """The interim transcript hash (§8.2).

    ``struct { MAC confirmation_tag; } InterimTranscriptHashInput;``
    """
    return suite.hash(confirmed + Writer().opaque(confirmation_tag).getvalue())


def confirmation_tag(suite: CipherSuite, confirmation_key: bytes, confirmed: bytes) -> bytes:
    """``MAC(confirmation_key, confirmed_transcript_hash)`` (§6.1)."""
    return suite.mac(confirmation_key, confirmed)


def verify_confirmation_tag(
    suite: CipherSuite, confirmation_key: bytes, confirmed: bytes, tag: bytes | None
) -> None:
    """Constant-time check of a confirmation tag; :class:`MLSAuthenticationError` if wrong."""
    expected = confirmation_tag(suite, confirmation_key, confirmed)
    if tag is None or not hmac.compare_digest(expected, tag):
        raise MLSAuthenticationError()
