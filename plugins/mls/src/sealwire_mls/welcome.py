"""Joining a group (RFC 9420 §12.4.3): GroupInfo, GroupSecrets, Welcome, the
joiner's key recovery (§12.4.3.1), and the MLSMessage envelope (§6) that
carries every wire format.

``welcome_key = ExpandWithLabel(welcome_secret, "key", "", AEAD.Nk)``,
``welcome_nonce = ExpandWithLabel(welcome_secret, "nonce", "", AEAD.Nn)``;
the GroupInfo is AEAD-encrypted under them, and each new member's
GroupSecrets are ``EncryptWithLabel(init_key, "Welcome",
encrypted_group_info, GroupSecrets)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from attrs import field, frozen

from sealwire_mls import tree_math as tm
from sealwire_mls.codec import Reader, Writer, decode_exact
from sealwire_mls.crypto import CipherSuite
from sealwire_mls.errors import MLSDecodeError, MLSProtocolError
from sealwire_mls.extensions import (
    Extension,
    ExtensionType,
    decode_extensions,
    encode_extensions,
    find_extension,
)
from sealwire_mls.framing import PrivateMessage, PublicMessage, WireFormat
from sealwire_mls.psk import PreSharedKeyID
from sealwire_mls.schedule import MLS10, GroupContext
from sealwire_mls.tree import RatchetTree
from sealwire_mls.treekem import TreeKEMPrivate, derive_path_keys

__all__ = [
    "EncryptedGroupSecrets",
    "GroupInfo",
    "GroupSecrets",
    "MLSMessage",
    "Welcome",
    "joiner_private_keys",
    "tree_from_group_info",
    "welcome_key_nonce",
]


def _to_bytes(value: Any) -> bytes:
    w = Writer()
    value.encode(w)
    return w.getvalue()


@frozen(kw_only=True)
class GroupInfo:
    """The signed group state a joiner needs (§12.4.3)."""

    group_context: GroupContext
    extensions: tuple[Extension, ...] = ()
    confirmation_tag: bytes
    signer: int
    signature: bytes = b""

    # struct {
    #     GroupContext group_context;
    #     Extension extensions<V>;
    #     MAC confirmation_tag;
    #     uint32 signer;
    # } GroupInfoTBS;
    def tbs(self) -> bytes:
        """The encoded GroupInfoTBS."""
        w = Writer()
        self.group_context.encode(w)
        encode_extensions(w, self.extensions)
        return w.opaque(self.confirmation_tag).uint32(self.signer).getvalue()

    # struct {
    #     ... the GroupInfoTBS fields ...
    #     /* SignWithLabel(., "GroupInfoTBS", GroupInfoTBS) */
    #     opaque signature<V>;
    # } GroupInfo;
    def encode(self, w: Writer) -> None:
        """Append the §12.4.3 encoding."""
        w.fixed(self.tbs()).opaque(self.signature)

    @classmethod
    def decode(cls, r: Reader) -> GroupInfo:
        """Read one GroupInfo (unverified)."""
        return cls(
            group_context=GroupContext.decode(r),
            extensions=decode_extensions(r, "GroupInfo.extensions"),
            confirmation_tag=r.opaque("GroupInfo.confirmation_tag"),
            signer=r.uint32("GroupInfo.signer"),
            signature=r.opaque("GroupInfo.signature"),
        )

    def to_bytes(self) -> bytes:
        """The encoded GroupInfo."""
        return _to_bytes(self)

    def sign(self, suite: CipherSuite, signature_priv: bytes) -> GroupInfo:
        """A copy signed with ``SignWithLabel(., "GroupInfoTBS", GroupInfoTBS)``."""
        signature = suite.sign_with_label(signature_priv, b"GroupInfoTBS", self.tbs())
        return GroupInfo(
            group_context=self.group_context,
            extensions=self.extensions,
            confirmation_tag=self.confirmation_tag,
            signer=self.signer,
            signature=signature,
        )

    def verify(self, suite: CipherSuite, signer_pub: bytes) -> None:
        """Verify the signature; :class:`MLSAuthenticationError` if it fails."""
        suite.verify_with_label(signer_pub, b"GroupInfoTBS", self.tbs(), self.signature)


@frozen(kw_only=True)
class GroupSecrets:
    """What each new member decrypts from a Welcome (§12.4.3). Secrets are not in ``repr``."""

    joiner_secret: bytes = field(repr=False)
    path_secret: bytes | None = field(default=None, repr=False)
    psks: tuple[PreSharedKeyID, ...] = ()

    # struct { opaque path_secret<V>; } PathSecret;
    # struct {
    #   opaque joiner_secret<V>;
    #   optional<PathSecret> path_secret;
    #   PreSharedKeyID psks<V>;
    # } GroupSecrets;
    def encode(self, w: Writer) -> None:
        """Append the §12.4.3 encoding."""
        w.opaque(self.joiner_secret).optional(self.path_secret, Writer.opaque)
        w.vector(self.psks, lambda w2, p: p.encode(w2))

    @classmethod
    def decode(cls, r: Reader) -> GroupSecrets:
        """Read one GroupSecrets."""
        return cls(
            joiner_secret=r.opaque("GroupSecrets.joiner_secret"),
            path_secret=r.optional(lambda r2: r2.opaque("PathSecret"), "GroupSecrets.path"),
            psks=tuple(r.vector(PreSharedKeyID.decode, "GroupSecrets.psks")),
        )


@frozen(kw_only=True)
class EncryptedGroupSecrets:
    """One new member's encrypted GroupSecrets, found by KeyPackageRef (§12.4.3)."""

    new_member: bytes
    kem_output: bytes
    ciphertext: bytes

    # struct {
    #   KeyPackageRef new_member;
    #   HPKECiphertext encrypted_group_secrets;
    # } EncryptedGroupSecrets;
    # struct { opaque kem_output<V>; opaque ciphertext<V>; } HPKECiphertext;
    def encode(self, w: Writer) -> None:
        """Append the §12.4.3 encoding."""
        w.opaque(self.new_member).opaque(self.kem_output).opaque(self.ciphertext)

    @classmethod
    def decode(cls, r: Reader) -> EncryptedGroupSecrets:
        """Read one EncryptedGroupSecrets."""
        return cls(
            new_member=r.opaque("EncryptedGroupSecrets.new_member"),
            kem_output=r.opaque("HPKECiphertext.kem_output"),
            ciphertext=r.opaque("HPKECiphertext.ciphertext"),
        )


def welcome_key_nonce(suite: CipherSuite, welcome_secret: bytes) -> tuple[bytes, bytes]:
    """(welcome_key, welcome_nonce) from the epoch's ``welcome_secret`` (§12.4.3.1)."""
    key = suite.expand_with_label(welcome_secret, b"key", b"", suite.Nk)
    return key, suite.expand_with_label(welcome_secret, b"nonce", b"", suite.Nn)


@frozen(kw_only=True)
class Welcome:
    """The message that adds new members (§12.4.3)."""

    cipher_suite: int
    secrets: tuple[EncryptedGroupSecrets, ...]
    encrypted_group_info: bytes

    # struct {
    #   CipherSuite cipher_suite;
    #   EncryptedGroupSecrets secrets<V>;
    #   opaque encrypted_group_info<V>;
    # } Welcome;
    def encode(self, w: Writer) -> None:
        """Append the §12.4.3 encoding."""
        w.uint16(self.cipher_suite).vector(self.secrets, lambda w2, s: s.encode(w2))
        w.opaque(self.encrypted_group_info)

    @classmethod
    def decode(cls, r: Reader) -> Welcome:
        """Read one Welcome."""
        return cls(
            cipher_suite=r.uint16("Welcome.cipher_suite"),
            secrets=tuple(r.vector(EncryptedGroupSecrets.decode, "Welcome.secrets")),
            encrypted_group_info=r.opaque("Welcome.encrypted_group_info"),
        )

    @classmethod
    def create(
        cls,
        suite: CipherSuite,
        welcome_secret: bytes,
        group_info: GroupInfo,
        recipients: Sequence[tuple[bytes, bytes, GroupSecrets]],
    ) -> Welcome:
        """Encrypt ``group_info`` and, per (KeyPackageRef, init_key, GroupSecrets), the secrets."""
        key, nonce = welcome_key_nonce(suite, welcome_secret)
        encrypted_info = suite.aead_encrypt(key, nonce, b"", group_info.to_bytes())
        secrets = []
        for ref, init_key, group_secrets in recipients:
            kem_output, ct = suite.encrypt_with_label(
                init_key, b"Welcome", encrypted_info, _to_bytes(group_secrets)
            )
            secrets.append(
                EncryptedGroupSecrets(new_member=ref, kem_output=kem_output, ciphertext=ct)
            )
        return cls(
            cipher_suite=suite.id, secrets=tuple(secrets), encrypted_group_info=encrypted_info
        )

    def group_secrets(
        self, suite: CipherSuite, key_package_ref: bytes, init_priv: bytes
    ) -> GroupSecrets:
        """Find our entry by KeyPackageRef and decrypt it with the KeyPackage's ``init_key``."""
        if suite.id != self.cipher_suite:
            raise MLSProtocolError("Welcome cipher suite differs from the KeyPackage's")
        for entry in self.secrets:
            if entry.new_member == key_package_ref:
                plaintext = suite.decrypt_with_label(
                    init_priv,
                    b"Welcome",
                    self.encrypted_group_info,
                    entry.kem_output,
                    entry.ciphertext,
                )
                return decode_exact(plaintext, GroupSecrets.decode, "GroupSecrets")
        raise MLSProtocolError("Welcome has no entry for this KeyPackage")

    def group_info(self, suite: CipherSuite, welcome_secret: bytes) -> GroupInfo:
        """Decrypt the (unverified) GroupInfo with the ``welcome_secret``."""
        key, nonce = welcome_key_nonce(suite, welcome_secret)
        plaintext = suite.aead_decrypt(key, nonce, b"", self.encrypted_group_info)
        return decode_exact(plaintext, GroupInfo.decode, "GroupInfo")


def _key_package() -> Any:
    from sealwire_mls.keypackage import KeyPackage

    return KeyPackage


_BODIES: dict[WireFormat, Any] = {
    WireFormat.PUBLIC_MESSAGE: PublicMessage,
    WireFormat.PRIVATE_MESSAGE: PrivateMessage,
    WireFormat.WELCOME: Welcome,
    WireFormat.GROUP_INFO: GroupInfo,
}


@frozen
class MLSMessage:
    """The envelope of every MLS message (§6)."""

    wire_format: WireFormat
    body: Any

    # struct {
    #     ProtocolVersion version = mls10;
    #     WireFormat wire_format;
    #     select (MLSMessage.wire_format) {
    #         case mls_public_message:  PublicMessage public_message;
    #         case mls_private_message: PrivateMessage private_message;
    #         case mls_welcome:         Welcome welcome;
    #         case mls_group_info:      GroupInfo group_info;
    #         case mls_key_package:     KeyPackage key_package;
    #     };
    # } MLSMessage;
    def encode(self, w: Writer) -> None:
        """Append the §6 encoding."""
        w.uint16(MLS10).uint16(self.wire_format)
        self.body.encode(w)

    @classmethod
    def decode(cls, r: Reader) -> MLSMessage:
        """Read one MLSMessage; only ``mls10`` and the five wire formats are accepted."""
        if r.uint16("MLSMessage.version") != MLS10:
            raise MLSDecodeError("unsupported protocol version", field="MLSMessage.version")
        value = r.uint16("MLSMessage.wire_format")
        try:
            wire = WireFormat(value)
        except ValueError:
            raise MLSDecodeError(f"unknown wire format {value}", field="wire_format") from None
        body_type = _key_package() if wire is WireFormat.KEY_PACKAGE else _BODIES[wire]
        return cls(wire, body_type.decode(r))

    def to_bytes(self) -> bytes:
        """The encoded MLSMessage."""
        return _to_bytes(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> MLSMessage:
        """Decode exactly one MLSMessage."""
        return decode_exact(data, cls.decode, "MLSMessage")


def verified_tree(
    suite: CipherSuite, info: GroupInfo, ratchet_tree: RatchetTree | None = None
) -> RatchetTree:
    """The group's ratchet tree, once a joiner checked it and the GroupInfo (§12.4.3.1):
    the signer's signature, the tree's validity (§7.9.2) and its hash."""
    group_id = info.group_context.group_id
    if ratchet_tree is not None:
        tree, leaf_signatures = ratchet_tree, None
    else:
        ext = _ratchet_tree_extension(info)
        tree, leaf_signatures = RatchetTree.decode_checking_leaves(
            suite, ext.extension_data, group_id
        )
    signer = tree.leaf(info.signer)
    if signer is None:
        if leaf_signatures is not None:
            leaf_signatures.cancel()
        raise MLSProtocolError("GroupInfo signer is a blank leaf")
    # The tree first: it finishes (or cancels) the leaf checks already under way.
    tree.validate(group_id, leaf_signatures=leaf_signatures)
    info.verify(suite, signer.signature_key)
    if tree.tree_hash() != info.group_context.tree_hash:
        raise MLSProtocolError("ratchet tree does not match the GroupContext tree hash")
    return tree


def tree_from_group_info(suite: CipherSuite, info: GroupInfo) -> RatchetTree:
    """The ratchet tree carried in the GroupInfo's ``ratchet_tree`` extension (§12.4.3.3)."""
    return RatchetTree.from_extension(suite, _ratchet_tree_extension(info))


def _ratchet_tree_extension(info: GroupInfo) -> Extension:
    ext = find_extension(info.extensions, ExtensionType.RATCHET_TREE)
    if ext is None:
        raise MLSProtocolError("no ratchet tree in the GroupInfo and none given")
    return ext


def joiner_private_keys(
    suite: CipherSuite,
    tree: RatchetTree,
    me: int,
    signer: int,
    secrets: GroupSecrets,
    encryption_priv: bytes,
) -> TreeKEMPrivate:
    """Our leaf key plus the path keys from the Welcome's ``path_secret`` (§12.4.3.1)."""
    keys = {2 * me: encryption_priv}
    if secrets.path_secret is not None:
        ancestor = tm.common_ancestor(2 * me, 2 * signer)
        path = [p for p, _ in tree.filtered_direct_path(signer)]
        if ancestor not in path:
            raise MLSProtocolError("path secret for a node not on the signer's path")
        above = path[path.index(ancestor) :]
        pairs, _ = derive_path_keys(suite, secrets.path_secret, len(above))
        for p, (priv, pub) in zip(above, pairs, strict=True):
            node = tree.node(p)
            if node is None or node.encryption_key != pub:
                raise MLSProtocolError(f"path secret does not match node {p}")
            keys[p] = priv
    private = TreeKEMPrivate(me, keys)
    if not private.consistent_with(suite, tree):
        raise MLSProtocolError("our private keys do not match the tree")
    return private
