"""LeafNodes and KeyPackages (RFC 9420 §7.2-7.3, §10).

A decoded :class:`LeafNode` or :class:`KeyPackage` is unverified until its
``verify`` / :func:`validate_key_package` call returns. Time is passed in
(seconds since the Unix epoch): the engine has no clock of its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from enum import IntEnum

import attrs
from attrs import field, frozen

from sealwire_mls.codec import Reader, Writer, encode_varint
from sealwire_mls.credentials import Credential
from sealwire_mls.crypto import CipherSuite, cipher_suite
from sealwire_mls.errors import MLSDecodeError, MLSLocalError, MLSProtocolError
from sealwire_mls.extensions import (
    PROTOCOL_VERSION_MLS10,
    Capabilities,
    Extension,
    RequiredCapabilities,
    check_unique_extensions,
    decode_extensions,
    encode_extensions,
)

__all__ = [
    "KEY_PACKAGE_REF_LABEL",
    "GroupLeaves",
    "HPKEPublicKey",
    "MAX_LIFETIME_SECONDS",
    "KeyPackage",
    "KeyPackageWithKeys",
    "LeafNode",
    "LeafNodeSource",
    "Lifetime",
    "SignaturePublicKey",
    "build_key_package",
    "check_leaf_contents",
    "validate_key_package",
    "validate_leaf_node",
]

#: RefHash label of a KeyPackageRef (§5.2).
KEY_PACKAGE_REF_LABEL = b"MLS 1.0 KeyPackage Reference"
#: The longest LeafNode lifetime Sealwire accepts by default (§7.2: "Applications
#: MUST define a maximum total lifetime"): 90 days, so a leaked KeyPackage ages out.
#: A group's policy may choose another cap (the MLS binding's
#: ``key_package_max_lifetime_days``), or none: peers' defaults differ (mls-rs makes
#: KeyPackages of 365 days, ts-mls of 0 .. 2**63 - 1 seconds).
MAX_LIFETIME_SECONDS = 90 * 24 * 3600
#: A lifetime whose ``not_after`` is at least this is named unbounded in errors
#: (ts-mls's default is 2**63 - 1): no date is meant, only "never expires".
UNBOUNDED_NOT_AFTER = 2**62


#: ``opaque HPKEPublicKey<V>`` (§5.1.1): the serialized KEM public key, as bytes.
HPKEPublicKey = bytes
#: ``opaque SignaturePublicKey<V>`` (§5.1.1).
SignaturePublicKey = bytes


class LeafNodeSource(IntEnum):
    """``uint8 LeafNodeSource`` (§7.2)."""

    KEY_PACKAGE = 1
    UPDATE = 2
    COMMIT = 3


@frozen
class Lifetime:
    """``struct { uint64 not_before; uint64 not_after; } Lifetime;`` (§7.2)."""

    not_before: int
    not_after: int

    def contains(self, now: int) -> bool:
        """Whether ``now`` lies within the lifetime."""
        return self.not_before <= now <= self.not_after


@frozen(kw_only=True)
class LeafNode:
    """A ``LeafNode`` (§7.2). Build and sign with :meth:`create`."""

    encryption_key: HPKEPublicKey
    signature_key: SignaturePublicKey
    credential: Credential
    capabilities: Capabilities
    leaf_node_source: int
    lifetime: Lifetime | None = None
    parent_hash: bytes = b""
    extensions: tuple[Extension, ...] = ()
    signature: bytes = b""
    # The encoding, memoized: tree hashes and KeyPackages re-encode leaves often.
    _encoded: bytes | None = field(default=None, init=False, eq=False, repr=False)

    def _encode_content(self, w: Writer) -> None:
        w.opaque(self.encryption_key).opaque(self.signature_key)
        self.credential.encode(w)
        self.capabilities.encode(w)
        w.uint8(self.leaf_node_source)
        if self.leaf_node_source == LeafNodeSource.KEY_PACKAGE:
            lifetime = self.lifetime if self.lifetime is not None else Lifetime(0, 0)
            w.uint64(lifetime.not_before).uint64(lifetime.not_after)
        elif self.leaf_node_source == LeafNodeSource.COMMIT:
            w.opaque(self.parent_hash)
        encode_extensions(w, self.extensions)

    # struct {
    #     HPKEPublicKey encryption_key;
    #     SignaturePublicKey signature_key;
    #     Credential credential;
    #     Capabilities capabilities;
    #     LeafNodeSource leaf_node_source;
    #     select (LeafNodeTBS.leaf_node_source) {
    #         case key_package: Lifetime lifetime;
    #         case update:      struct{};
    #         case commit:      opaque parent_hash<V>;
    #     };
    #     Extension extensions<V>;
    #     select (LeafNodeTBS.leaf_node_source) {
    #         case key_package: struct{};
    #         case update:      opaque group_id<V>; uint32 leaf_index;
    #         case commit:      opaque group_id<V>; uint32 leaf_index;
    #     };
    # } LeafNodeTBS;
    def tbs(self, group_id: bytes | None = None, leaf_index: int | None = None) -> bytes:
        """The ``LeafNodeTBS`` bytes; group_id / leaf_index are needed unless key_package."""
        # The encoded LeafNode is the TBS content then ``opaque signature<V>``: cut it off.
        encoded = self.to_bytes()
        cut = len(encode_varint(len(self.signature))) + len(self.signature)
        signed = encoded[: len(encoded) - cut]
        if self.leaf_node_source == LeafNodeSource.KEY_PACKAGE:
            return signed
        if group_id is None or leaf_index is None:
            raise MLSLocalError("LeafNodeTBS needs group_id and leaf_index")
        return Writer().fixed(signed).opaque(group_id).uint32(leaf_index).getvalue()

    # struct {
    #     ... the LeafNodeTBS fields up to extensions ...
    #     /* SignWithLabel(., "LeafNodeTBS", LeafNodeTBS) */
    #     opaque signature<V>;
    # } LeafNode;
    def encode(self, w: Writer) -> None:
        """Write the ``LeafNode`` struct."""
        w.fixed(self.to_bytes())

    def to_bytes(self) -> bytes:
        """The encoded ``LeafNode`` (computed once per object)."""
        if self._encoded is None:
            w = Writer()
            self._encode_content(w)
            w.opaque(self.signature)
            object.__setattr__(self, "_encoded", w.getvalue())
        assert self._encoded is not None
        return self._encoded

    @classmethod
    def decode(cls, r: Reader) -> LeafNode:
        """Read a ``LeafNode`` (unverified), remembering the bytes it was read from.

        The codec's encoding is canonical (minimal varints, strict enums), so
        those bytes are its encoding: a joiner hashes and verifies 10,000
        leaves without encoding one.
        """
        start = r.position
        leaf = cls._decode_fields(r)
        object.__setattr__(leaf, "_encoded", r.since(start))
        return leaf

    @classmethod
    def _decode_fields(cls, r: Reader) -> LeafNode:
        encryption_key = r.opaque("encryption_key")
        signature_key = r.opaque("signature_key")
        credential = Credential.decode(r)
        capabilities = Capabilities.decode(r)
        source = r.uint8("leaf_node_source")
        lifetime, parent_hash = None, b""
        if source == LeafNodeSource.KEY_PACKAGE:
            lifetime = Lifetime(r.uint64("not_before"), r.uint64("not_after"))
        elif source == LeafNodeSource.COMMIT:
            parent_hash = r.opaque("parent_hash")
        elif source != LeafNodeSource.UPDATE:
            raise MLSDecodeError(f"unknown leaf_node_source {source}", field="leaf_node_source")
        return cls(
            encryption_key=encryption_key,
            signature_key=signature_key,
            credential=credential,
            capabilities=capabilities,
            leaf_node_source=source,
            lifetime=lifetime,
            parent_hash=parent_hash,
            extensions=decode_extensions(r),
            signature=r.opaque("signature"),
        )

    def sign(
        self,
        cs: CipherSuite,
        signature_priv: bytes,
        group_id: bytes | None = None,
        leaf_index: int | None = None,
    ) -> LeafNode:
        """This node with a fresh ``SignWithLabel(., "LeafNodeTBS", LeafNodeTBS)``."""
        sig = cs.sign_with_label(signature_priv, b"LeafNodeTBS", self.tbs(group_id, leaf_index))
        return attrs.evolve(self, signature=sig)

    def verify(
        self, cs: CipherSuite, group_id: bytes | None = None, leaf_index: int | None = None
    ) -> None:
        """Check the signature; :class:`MLSAuthenticationError` if it fails."""
        tbs = self.tbs(group_id, leaf_index)
        cs.verify_with_label(self.signature_key, b"LeafNodeTBS", tbs, self.signature)


def check_leaf_contents(
    leaf: LeafNode, *, now: int | None = None, max_lifetime: int | None = MAX_LIFETIME_SECONDS
) -> None:
    """The §7.3 checks on a LeafNode's own fields, whatever its source.

    The credential type and every extension are listed in the capabilities,
    extension types do not repeat, and, when ``now`` is given, the lifetime
    holds it and spans at most ``max_lifetime`` seconds (the group's cap,
    :data:`MAX_LIFETIME_SECONDS` by default; None: no cap, only the window).
    """
    if leaf.credential.credential_type not in leaf.capabilities.credentials:
        raise MLSProtocolError("credential type not listed in capabilities")
    check_unique_extensions(leaf.extensions)
    for ext in leaf.extensions:
        if not leaf.capabilities.supports_extension(ext.extension_type):
            raise MLSProtocolError(f"extension {ext.extension_type} not in capabilities")
    if now is not None and leaf.lifetime is not None:
        lifetime = leaf.lifetime
        if now < lifetime.not_before:
            raise MLSProtocolError(
                f"leaf node not valid yet: not_before is {lifetime.not_before - now} s ahead"
            )
        if now > lifetime.not_after:
            raise MLSProtocolError(f"leaf node expired {now - lifetime.not_after} s ago")
        span = lifetime.not_after - lifetime.not_before
        if max_lifetime is not None and span > max_lifetime:
            spans = (
                "is unbounded"
                if lifetime.not_after >= UNBOUNDED_NOT_AFTER
                else f"spans {span // 86400} days"
            )
            raise MLSProtocolError(
                f"KeyPackage lifetime {spans}, longer than this group's cap of "
                f"{max_lifetime // 86400} days (RFC 9420 §7.2; the MLS binding option "
                "key_package_max_lifetime_days)"
            )


def validate_leaf_node(
    leaf: LeafNode,
    cs: CipherSuite,
    *,
    source: LeafNodeSource,
    group_id: bytes | None = None,
    leaf_index: int | None = None,
    now: int | None = None,
    max_lifetime: int | None = MAX_LIFETIME_SECONDS,
) -> None:
    """The per-node checks of §7.3 (group-wide ones: :class:`GroupLeaves`).

    Checks the source, the signature (over ``group_id`` and ``leaf_index``
    unless the source is ``key_package``) and :func:`check_leaf_contents`.
    """
    if leaf.leaf_node_source != source:
        raise MLSProtocolError(f"leaf_node_source is {leaf.leaf_node_source}, expected {source}")
    leaf.verify(cs, group_id, leaf_index)
    check_leaf_contents(leaf, now=now, max_lifetime=max_lifetime)


class GroupLeaves:
    """The group-wide LeafNode checks of §7.3 for leaves entering the tree.

    Built once per commit from the tree's leaves (O(N)); then each leaf that
    enters (an Add, an Update) is checked in O(1): required capabilities,
    mutual credential-type support (every member supports the leaf's type, the
    leaf supports every member's), and unique encryption and signature keys.
    :meth:`remove` and :meth:`put` follow the proposals as they are applied.
    """

    def __init__(self, members: Iterable[tuple[int, LeafNode]]) -> None:
        self._leaves: dict[int, LeafNode] = {}
        self._keys: set[bytes] = set()
        self._supporting: Counter[int] = Counter()  # credential type -> members supporting it
        self._using: Counter[int] = Counter()  # credential type -> members holding one
        for index, leaf in members:
            self.put(index, leaf)

    def put(self, index: int, leaf: LeafNode) -> None:
        """``leaf`` is now at ``index``."""
        self.remove(index)
        self._leaves[index] = leaf
        self._keys.update((b"e" + leaf.encryption_key, b"s" + leaf.signature_key))
        self._supporting.update(set(leaf.capabilities.credentials))
        self._using[leaf.credential.credential_type] += 1

    def remove(self, index: int) -> None:
        """The leaf at ``index`` (if any) leaves the tree."""
        leaf = self._leaves.pop(index, None)
        if leaf is None:
            return
        self._keys.difference_update((b"e" + leaf.encryption_key, b"s" + leaf.signature_key))
        self._supporting.subtract(set(leaf.capabilities.credentials))
        self._using[leaf.credential.credential_type] -= 1

    def check(
        self,
        leaf: LeafNode,
        *,
        replacing: int | None = None,
        required: RequiredCapabilities | None = None,
    ) -> None:
        """Check ``leaf`` against the other members; ``replacing`` is the index it
        replaces (Update, commit path), whose old ``encryption_key`` must differ."""
        if required is not None and not required.satisfied_by(leaf.capabilities):
            raise MLSProtocolError("leaf does not support the group's required capabilities")
        old = self._leaves.get(replacing) if replacing is not None else None
        if replacing is None or old is None:
            self._check_others(leaf)
            return
        if leaf.leaf_node_source == LeafNodeSource.UPDATE and (
            old.encryption_key == leaf.encryption_key
        ):
            raise MLSProtocolError("Update must change the encryption key")
        self.remove(replacing)  # its old keys are not compared
        try:
            self._check_others(leaf)
        finally:
            self.put(replacing, old)

    def _check_others(self, leaf: LeafNode) -> None:
        kind = leaf.credential.credential_type
        if self._supporting[kind] != len(self._leaves):
            raise MLSProtocolError(f"a member does not support credential type {kind}")
        supported = set(leaf.capabilities.credentials)
        if any(n > 0 and used not in supported for used, n in self._using.items()):
            raise MLSProtocolError("leaf does not support a member's credential type")
        if b"e" + leaf.encryption_key in self._keys or b"s" + leaf.signature_key in self._keys:
            raise MLSProtocolError("leaf repeats a member's key")


@frozen(kw_only=True)
class KeyPackage:
    """A ``KeyPackage`` (§10). Build and sign with :meth:`sign`."""

    version: int = PROTOCOL_VERSION_MLS10
    cipher_suite: int
    init_key: HPKEPublicKey
    leaf_node: LeafNode
    extensions: tuple[Extension, ...] = ()
    signature: bytes = b""

    # struct {
    #     ProtocolVersion version;
    #     CipherSuite cipher_suite;
    #     HPKEPublicKey init_key;
    #     LeafNode leaf_node;
    #     Extension extensions<V>;
    # } KeyPackageTBS;
    def tbs(self) -> bytes:
        """The ``KeyPackageTBS`` bytes."""
        w = Writer().uint16(self.version).uint16(self.cipher_suite).opaque(self.init_key)
        self.leaf_node.encode(w)
        encode_extensions(w, self.extensions)
        return w.getvalue()

    # struct {
    #     ... the KeyPackageTBS fields ...
    #     /* SignWithLabel(., "KeyPackageTBS", KeyPackageTBS) */
    #     opaque signature<V>;
    # } KeyPackage;
    def encode(self, w: Writer) -> None:
        """Write the ``KeyPackage`` struct."""
        w.fixed(self.tbs()).opaque(self.signature)

    def to_bytes(self) -> bytes:
        """The encoded ``KeyPackage``."""
        return Writer().fixed(self.tbs()).opaque(self.signature).getvalue()

    @classmethod
    def decode(cls, r: Reader) -> KeyPackage:
        """Read a ``KeyPackage`` (unverified: call :func:`validate_key_package`)."""
        return cls(
            version=r.uint16("version"),
            cipher_suite=r.uint16("cipher_suite"),
            init_key=r.opaque("init_key"),
            leaf_node=LeafNode.decode(r),
            extensions=decode_extensions(r),
            signature=r.opaque("signature"),
        )

    def sign(self, cs: CipherSuite, signature_priv: bytes) -> KeyPackage:
        """This KeyPackage with a fresh signature over ``KeyPackageTBS``."""
        sig = cs.sign_with_label(signature_priv, b"KeyPackageTBS", self.tbs())
        return attrs.evolve(self, signature=sig)

    def ref(self, cs: CipherSuite) -> bytes:
        """``KeyPackageRef = RefHash("MLS 1.0 KeyPackage Reference", KeyPackage)`` (§5.2)."""
        return cs.ref_hash(KEY_PACKAGE_REF_LABEL, self.to_bytes())


def validate_key_package(
    kp: KeyPackage,
    cs: CipherSuite,
    *,
    now: int | None = None,
    max_lifetime: int | None = MAX_LIFETIME_SECONDS,
) -> None:
    """KeyPackage validation (§10.1) against the group's cipher suite ``cs``; the
    leaf's lifetime is checked when ``now`` is given, against ``max_lifetime``.

    Raises :class:`MLSProtocolError` for a forbidden value and
    :class:`MLSAuthenticationError` for a bad signature.
    """
    if kp.version != PROTOCOL_VERSION_MLS10 or kp.cipher_suite != cs.id:
        raise MLSProtocolError("KeyPackage version or cipher suite does not match the group")
    cs.verify_with_label(kp.leaf_node.signature_key, b"KeyPackageTBS", kp.tbs(), kp.signature)
    validate_leaf_node(
        kp.leaf_node, cs, source=LeafNodeSource.KEY_PACKAGE, now=now, max_lifetime=max_lifetime
    )
    check_unique_extensions(kp.extensions)
    if kp.init_key == kp.leaf_node.encryption_key:
        raise MLSProtocolError("KeyPackage init_key equals the leaf encryption_key")


@frozen(kw_only=True)
class KeyPackageWithKeys:
    """A KeyPackage and the private keys behind it (never in reprs): its ``init_priv``
    opens the Welcome that adds it, its ``encryption_priv`` is the leaf's."""

    key_package: KeyPackage
    init_priv: bytes = field(repr=False)
    encryption_priv: bytes = field(repr=False)


def build_key_package(
    *,
    suite_id: int,
    credential: Credential,
    signature_priv: bytes,
    not_before: int,
    not_after: int,
    capabilities: Capabilities | None = None,
    extensions: tuple[Extension, ...] = (),
) -> KeyPackageWithKeys:
    """A fresh KeyPackage (RFC 9420 §10) of ``credential`` for cipher suite ``suite_id``.

    New HPKE init and encryption key pairs are drawn; the leaf (valid from
    ``not_before`` to ``not_after``, UNIX seconds) and the package are signed with
    ``signature_priv``, the suite's signature key whose public half the leaf
    carries. ``capabilities`` default to this suite and the credential's type. The
    result passes :func:`validate_key_package` at a time inside its lifetime, if
    its span is within the validator's cap.
    """
    suite = cipher_suite(suite_id)
    if not 0 <= not_before < not_after <= UNBOUNDED_NOT_AFTER:
        raise MLSLocalError("a KeyPackage lifetime needs not_before < not_after")
    encryption_priv, encryption_pub = suite.hpke_key_pair()
    init_priv, init_pub = suite.hpke_key_pair()
    leaf = LeafNode(
        encryption_key=encryption_pub,
        signature_key=suite.signature_public_key(signature_priv),
        credential=credential,
        capabilities=capabilities
        or Capabilities(cipher_suites=(suite_id,), credentials=(credential.credential_type,)),
        leaf_node_source=LeafNodeSource.KEY_PACKAGE,
        lifetime=Lifetime(not_before, not_after),
    ).sign(suite, signature_priv)
    package = KeyPackage(
        cipher_suite=suite_id, init_key=init_pub, leaf_node=leaf, extensions=extensions
    )
    return KeyPackageWithKeys(
        key_package=package.sign(suite, signature_priv),
        init_priv=init_priv,
        encryption_priv=encryption_priv,
    )
