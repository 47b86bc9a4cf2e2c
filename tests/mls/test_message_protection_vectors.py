"""RFC 9420 message-protection vectors (``mls/message-protection.json``).

Format: per ``cipher_suite``, the GroupContext inputs, a signature key pair,
``encryption_secret``, ``sender_data_secret``, ``membership_key``, and for a
proposal, a commit and application data: the raw value and its protected
forms (``*_pub`` PublicMessage, ``*_priv`` PrivateMessage, as MLSMessages).

Checks, with leaf 1 of a 2-leaf secret tree as the sender: every protected
message decodes and re-encodes byte for byte; ``*_pub`` verifies with the
membership key and ``signature_pub`` and yields the raw value; protecting
the raw value ourselves gives a PublicMessage that verifies (application
data cannot be protected as a PublicMessage); ``*_priv`` unprotects with a
fresh secret tree; our own PrivateMessage unprotects with another fresh tree.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from sealwire.testing.vectors import load_json
from sealwire_mls.codec import Writer, decode_exact
from sealwire_mls.crypto import CipherSuite, cipher_suite
from sealwire_mls.errors import MLSLocalError
from sealwire_mls.framing import (
    AuthenticatedContent,
    ContentType,
    FramedContent,
    Sender,
    WireFormat,
    decode_content_body,
    protect_private,
    protect_public,
    unprotect_private,
    unprotect_public,
)
from sealwire_mls.schedule import GroupContext
from sealwire_mls.secret_tree import SecretTree
from sealwire_mls.welcome import MLSMessage

h = bytes.fromhex
_PUBLIC = WireFormat.PUBLIC_MESSAGE


def _body(ctype: ContentType, raw: bytes) -> Any:
    if ctype is ContentType.APPLICATION:
        return raw
    return decode_exact(raw, lambda r: decode_content_body(r, ctype))


def _encoded(ctype: ContentType, body: Any) -> bytes:
    if ctype is ContentType.APPLICATION:
        return bytes(body)
    w = Writer()
    body.encode(w)
    return w.getvalue()


def _sign(
    suite: CipherSuite,
    v: dict[str, Any],
    ctx: GroupContext,
    ctype: ContentType,
    body: Any,
    wire: WireFormat,
) -> AuthenticatedContent:
    content = FramedContent(
        group_id=ctx.group_id,
        epoch=ctx.epoch,
        sender=Sender.member(1),
        authenticated_data=b"sealwire",
        content_type=ctype,
        content=body,
    )
    tag = bytes(suite.Nh) if ctype is ContentType.COMMIT else None
    return AuthenticatedContent.sign(suite, wire, content, h(v["signature_priv"]), ctx, tag)


def _check_one(
    suite: CipherSuite, v: dict[str, Any], ctx: GroupContext, name: str, ctype: ContentType
) -> None:
    raw, sig_pub = h(v[name]), h(v["signature_pub"])
    body = _body(ctype, raw)
    assert _encoded(ctype, body) == raw
    mk, sds, es = h(v["membership_key"]), h(v["sender_data_secret"]), h(v["encryption_secret"])
    if ctype is not ContentType.APPLICATION:
        pub = MLSMessage.from_bytes(h(v[name + "_pub"]))
        assert pub.to_bytes().hex() == v[name + "_pub"]
        ac = unprotect_public(suite, pub.body, ctx, mk, sig_pub)
        assert _encoded(ctype, ac.content.content) == raw
        ours = protect_public(
            suite, _sign(suite, v, ctx, ctype, body, WireFormat.PUBLIC_MESSAGE), ctx, mk
        )
        again = MLSMessage.from_bytes(MLSMessage(WireFormat.PUBLIC_MESSAGE, ours).to_bytes())
        assert unprotect_public(suite, again.body, ctx, mk, sig_pub).content.content == body
    else:
        with pytest.raises(MLSLocalError):
            protect_public(
                suite, _sign(suite, v, ctx, ctype, body, WireFormat.PUBLIC_MESSAGE), ctx, mk
            )
    priv = MLSMessage.from_bytes(h(v[name + "_priv"]))
    assert priv.to_bytes().hex() == v[name + "_priv"]
    ac = unprotect_private(suite, priv.body, ctx, SecretTree(suite, es, 2), sds, sig_pub)
    assert _encoded(ctype, ac.content.content) == raw
    signed = _sign(suite, v, ctx, ctype, body, WireFormat.PRIVATE_MESSAGE)
    sealed = protect_private(suite, signed, SecretTree(suite, es, 2), sds, os.urandom, 16)
    again = MLSMessage.from_bytes(MLSMessage(WireFormat.PRIVATE_MESSAGE, sealed).to_bytes())
    opened = unprotect_private(suite, again.body, ctx, SecretTree(suite, es, 2), sds, sig_pub)
    assert opened == signed


def _check(v: dict[str, Any]) -> None:
    suite = cipher_suite(v["cipher_suite"])
    ctx = GroupContext(
        cipher_suite=suite.id,
        group_id=h(v["group_id"]),
        epoch=v["epoch"],
        tree_hash=h(v["tree_hash"]),
        confirmed_transcript_hash=h(v["confirmed_transcript_hash"]),
    )
    for name, ctype in (
        ("proposal", ContentType.PROPOSAL),
        ("commit", ContentType.COMMIT),
        ("application", ContentType.APPLICATION),
    ):
        _check_one(suite, v, ctx, name, ctype)


def test_message_protection_vectors(tally: Any, suite_supported: Any) -> None:
    counter = tally("message-protection")
    counter.run(
        load_json("mls/message-protection.json"),
        _check,
        name=lambda v: f"suite {v['cipher_suite']}",
        supported=suite_supported,
    )
    counter.assert_all_passed()
