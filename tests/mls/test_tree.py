"""Property and API tests of the ratchet tree, TreeKEM and the MLS structs.

* Random add / remove / update / commit sequences on a small group harness:
  the incrementally cached tree hash always equals a from-scratch one, every
  tree stays parent-hash valid after commits, every member derives the same
  commit secret and keeps private keys consistent with the tree.
* Arbitrary bytes fed to every decoder give a value or MLSDecodeError only.
* Tampering with an UpdatePath is rejected and leaves the caller's tree and
  private state unchanged.
* KeyPackage / LeafNode signing and §10.1 validation, credentials and
  extensions round trips.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealwire.identity import agent_id_for
from sealwire_mls.codec import Reader, Writer, decode_exact
from sealwire_mls.credentials import BasicCredential, Credential, CredentialType
from sealwire_mls.crypto import cipher_suite
from sealwire_mls.errors import MLSAuthenticationError, MLSDecodeError, MLSProtocolError
from sealwire_mls.extensions import (
    Capabilities,
    Extension,
    ExternalSender,
    RequiredCapabilities,
    decode_external_senders,
    encode_external_senders,
)
from sealwire_mls.keypackage import (
    GroupLeaves,
    KeyPackage,
    LeafNode,
    LeafNodeSource,
    Lifetime,
    validate_key_package,
)
from sealwire_mls.proposals import Commit, Proposal, Remove
from sealwire_mls.tree import RatchetTree, decode_node
from sealwire_mls.treekem import (
    TreeKEMPrivate,
    UpdatePath,
    create_update_path,
    joiner_private,
    path_secret_for_joiner,
    process_update_path,
)

CS = cipher_suite(1)
GROUP_ID = b"sealwire-test-group"
CAPS = Capabilities(cipher_suites=(1,), credentials=(CredentialType.BASIC,))
NOW = 1_700_000_000


def _context(tree_hash: bytes) -> bytes:
    return Writer().opaque(GROUP_ID).opaque(tree_hash).getvalue()


def make_key_package(name: bytes) -> tuple[KeyPackage, bytes, bytes]:
    """A signed KeyPackage; returns it with its signature and encryption private keys."""
    sig_priv, sig_pub = CS.signature_key_pair()
    enc_priv, enc_pub = CS.derive_key_pair(os.urandom(32))
    leaf = LeafNode(
        encryption_key=enc_pub,
        signature_key=sig_pub,
        credential=Credential.basic(name),
        capabilities=CAPS,
        leaf_node_source=LeafNodeSource.KEY_PACKAGE,
        lifetime=Lifetime(NOW - 60, NOW + 3600),
    ).sign(CS, sig_priv)
    init_key = CS.derive_key_pair(os.urandom(32))[1]
    kp = KeyPackage(cipher_suite=1, init_key=init_key, leaf_node=leaf).sign(CS, sig_priv)
    return kp, sig_priv, enc_priv


def _process(
    tree: RatchetTree, priv: TreeKEMPrivate, sender: int, path: UpdatePath, joiners: frozenset[int]
) -> Any:
    return process_update_path(
        tree, priv, sender, path, group_id=GROUP_ID, group_context=_context, exclude=joiners
    )


class Group:
    """Every member's view at once: one shared public tree and each private state."""

    def __init__(self) -> None:
        kp, sig, enc = make_key_package(b"m0")
        self.tree = RatchetTree.create(CS, kp.leaf_node)
        self.privs = {0: TreeKEMPrivate(0, {0: enc})}
        self.sigs = {0: sig}
        self.counter = 1

    def members(self) -> list[int]:
        return [i for i, _ in self.tree.leaves()]

    def _forget_stale(self) -> None:
        """Drop private keys of nodes that were blanked or truncated away."""
        tree = self.tree
        for i, priv in self.privs.items():
            stale = {x for x in priv.keys if x >= tree.width or tree.node(x) is None}
            self.privs[i] = priv.with_keys(stale, {})

    def add(self, tree: RatchetTree) -> tuple[int, bytes, bytes]:
        kp, sig, enc = make_key_package(b"m%d" % self.counter)
        self.counter += 1
        return tree.add_leaf(kp.leaf_node), sig, enc

    def remove(self, k: int) -> None:
        target = self.members()[k % len(self.members())]
        if target == 0:
            return
        self.tree.remove_leaf(target)
        del self.privs[target], self.sigs[target]
        self._forget_stale()

    def update(self, k: int) -> None:
        target = self.members()[k % len(self.members())]
        old = self.tree.leaf(target)
        assert old is not None
        enc_priv, enc_pub = CS.derive_key_pair(os.urandom(32))
        leaf = attrs.evolve(
            old, encryption_key=enc_pub, leaf_node_source=LeafNodeSource.UPDATE, lifetime=None
        ).sign(CS, self.sigs[target], GROUP_ID, target)
        self.tree.update_leaf(target, leaf)
        self._forget_stale()
        self.privs[target] = TreeKEMPrivate(target, {2 * target: enc_priv})

    def commit(self, k: int, adds: int) -> UpdatePath:
        sender = self.members()[k % len(self.members())]
        staged = self.tree.copy()
        joiners = {}
        for _ in range(adds):
            index, sig, enc = self.add(staged)
            joiners[index] = (sig, enc)
        before = staged.copy()
        template = staged.leaf(sender)
        assert template is not None
        path, mine = create_update_path(
            staged,
            self.privs[sender],
            template,
            signature_priv=self.sigs[sender],
            group_id=GROUP_ID,
            group_context=_context,
            rng=os.urandom,
            exclude=frozenset(joiners),
        )
        new_privs = {sender: mine.private}
        for j, priv in self.privs.items():
            if j == sender:
                continue
            view = before.copy()
            res = _process(view, priv, sender, path, frozenset(joiners))
            assert res.commit_secret == mine.commit_secret
            assert view.tree_hash() == staged.tree_hash()
            new_privs[j] = res.private
        for j, (sig, enc) in joiners.items():
            secret = path_secret_for_joiner(staged, sender, mine.path_secret, j)
            new_privs[j] = joiner_private(staged, j, enc, sender, secret)
            self.sigs[j] = sig
        self.tree, self.privs = staged, new_privs
        return path

    def check(self) -> None:
        scratch = RatchetTree.decode(CS, self.tree.to_bytes())
        assert scratch.tree_hash() == self.tree.tree_hash()
        self.tree.validate(GROUP_ID)
        for priv in self.privs.values():
            assert priv.consistent_with(CS, self.tree)


OPS = st.lists(
    st.tuples(st.sampled_from(["add", "remove", "update", "commit"]), st.integers(0, 63)),
    min_size=1,
    max_size=12,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_random_operations_keep_hash_cache_and_parent_hashes(ops: list[tuple[str, int]]) -> None:
    group = Group()
    for op, k in ops:
        if op == "add":
            index, sig, enc = group.add(group.tree)
            group.privs[index] = TreeKEMPrivate(index, {2 * index: enc})
            group.sigs[index] = sig
        elif op == "remove":
            group.remove(k)
        elif op == "update":
            group.update(k)
        else:
            group.commit(k, adds=k % 3)
        group.check()


def test_large_group_commit_rehashes_only_the_path() -> None:
    leaves = [make_key_package(b"x%d" % i)[0].leaf_node for i in range(64)]
    tree = RatchetTree.create(CS, leaves[0])
    for leaf in leaves[1:]:
        tree.add_leaf(leaf)
    tree.tree_hash()
    tree.remove_leaf(17)
    cached = sum(h is not None for h in tree._hashes)
    assert cached == tree.width - 7  # the leaf and its 6 ancestors
    assert RatchetTree.decode(CS, tree.to_bytes()).tree_hash() == tree.tree_hash()


# -- tampering ---------------------------------------------------------------


def _flip(data: bytes, i: int) -> bytes:
    i %= len(data)
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


@pytest.fixture(scope="module")
def committed_group() -> tuple[dict[int, TreeKEMPrivate], RatchetTree, UpdatePath, int]:
    """Private states and tree of a 6-member group before member 3's commit, and its path."""
    group = Group()
    for _ in range(5):
        index, sig, enc = group.add(group.tree)
        group.privs[index], group.sigs[index] = TreeKEMPrivate(index, {2 * index: enc}), sig
    group.commit(0, adds=0)
    before, privs = group.tree.copy(), dict(group.privs)
    path = group.commit(3, adds=0)
    for j, private in privs.items():
        if j != 3:  # the untampered path is accepted by everyone
            process_update_path(
                before.copy(), private, 3, path, group_id=GROUP_ID, group_context=_context
            )
    return privs, before, path, 3


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 1 << 16))
def test_tampered_update_path_is_rejected_without_state_change(
    committed_group: tuple[dict[int, TreeKEMPrivate], RatchetTree, UpdatePath, int], where: int
) -> None:
    privs, before, path, sender = committed_group
    raw = Writer()
    path.encode(raw)
    try:
        bad = decode_exact(_flip(raw.getvalue(), where), UpdatePath.decode)
    except MLSDecodeError:
        return
    # A ciphertext is only opened by the members under its resolution node, so
    # the check is: some member rejects, and nobody's state changes.
    snapshot = before.to_bytes()
    rejected = 0
    for j, private in privs.items():
        if j == sender:
            continue
        keys = dict(private.keys)
        try:
            process_update_path(
                before.copy(), private, sender, bad, group_id=GROUP_ID, group_context=_context
            )
        except (MLSAuthenticationError, MLSProtocolError):
            rejected += 1
        assert dict(private.keys) == keys
    assert rejected > 0
    assert before.to_bytes() == snapshot


# -- hostile bytes -----------------------------------------------------------

DECODERS: dict[str, Callable[[Reader], Any]] = {
    "node": decode_node,
    "proposal": Proposal.decode,
    "commit": Commit.decode,
    "key_package": KeyPackage.decode,
    "leaf_node": LeafNode.decode,
    "update_path": UpdatePath.decode,
    "credential": Credential.decode,
    "capabilities": Capabilities.decode,
}


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(DECODERS)), st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_decode_error(name: str, data: bytes) -> None:
    with contextlib.suppress(MLSDecodeError):
        decode_exact(data, DECODERS[name])
    with contextlib.suppress(MLSDecodeError):
        RatchetTree.decode(CS, data)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 1 << 20), st.integers(1, 255))
def test_mutated_key_package_decodes_or_raises(where: int, xor: int) -> None:
    kp = make_key_package(b"fuzz")[0]
    data = bytearray(kp.to_bytes())
    data[where % len(data)] ^= xor
    try:
        decoded = decode_exact(bytes(data), KeyPackage.decode)
    except MLSDecodeError:
        return
    with pytest.raises((MLSAuthenticationError, MLSProtocolError)):
        validate_key_package(decoded, CS)


# -- KeyPackage, LeafNode, credentials, extensions ----------------------------


def test_key_package_validates_and_round_trips() -> None:
    kp = make_key_package(b"alice")[0]
    validate_key_package(kp, CS, now=NOW)
    again = decode_exact(kp.to_bytes(), KeyPackage.decode)
    assert again == kp
    assert len(kp.ref(CS)) == CS.Nh
    kp.leaf_node.verify(CS)


def test_key_package_validation_failures() -> None:
    kp, sig, _ = make_key_package(b"bob")
    with pytest.raises(MLSProtocolError):
        validate_key_package(kp, CS, now=NOW + 10**6)  # outside the lifetime
    with pytest.raises(MLSProtocolError):
        validate_key_package(kp, cipher_suite(3))  # wrong suite
    same_keys = attrs.evolve(kp, init_key=kp.leaf_node.encryption_key).sign(CS, sig)
    with pytest.raises(MLSProtocolError):
        validate_key_package(same_keys, CS)
    with pytest.raises(MLSAuthenticationError):
        validate_key_package(attrs.evolve(kp, cipher_suite=1, extensions=(Extension(9, b""),)), CS)
    with pytest.raises(MLSProtocolError):
        unlisted = attrs.evolve(kp.leaf_node, extensions=(Extension(0x0A0A, b"x"),)).sign(CS, sig)
        validate_key_package(attrs.evolve(kp, leaf_node=unlisted).sign(CS, sig), CS)


def test_update_leaf_signature_binds_group_and_index() -> None:
    kp, sig, _ = make_key_package(b"carol")
    leaf = attrs.evolve(kp.leaf_node, leaf_node_source=LeafNodeSource.UPDATE, lifetime=None)
    leaf = leaf.sign(CS, sig, GROUP_ID, 2)
    leaf.verify(CS, GROUP_ID, 2)
    with pytest.raises(MLSAuthenticationError):
        leaf.verify(CS, GROUP_ID, 3)
    with pytest.raises(MLSAuthenticationError):
        leaf.verify(CS, b"other", 2)


def test_agent_credential() -> None:
    agent_id = agent_id_for(Ed25519PrivateKey.generate().public_key())
    cred = Credential.for_agent(agent_id)
    assert decode_exact(_encode(cred), Credential.decode) == cred
    assert cred.agent_id() == agent_id
    assert BasicCredential.from_credential(cred) == BasicCredential(agent_id)
    assert BasicCredential.from_credential(Credential.basic(b"\xff")) is None
    x509 = Credential(credential_type=CredentialType.X509)
    assert x509.agent_id() is None
    assert decode_exact(_encode(x509), Credential.decode) == x509


def _encode(value: Any) -> bytes:
    w = Writer()
    value.encode(w)
    return w.getvalue()


@given(
    st.lists(st.integers(0, 0xFFFF), max_size=5),
    st.lists(st.integers(0, 0xFFFF), max_size=5),
    st.binary(max_size=40),
)
def test_struct_round_trips(types: list[int], more: list[int], blob: bytes) -> None:
    caps = Capabilities(cipher_suites=tuple(types), extensions=tuple(more), proposals=(9,))
    assert decode_exact(_encode(caps), Capabilities.decode) == caps
    req = RequiredCapabilities(extension_types=tuple(types), credential_types=tuple(more))
    assert RequiredCapabilities.from_extension(req.to_extension()) == req
    senders = (ExternalSender(blob, Credential.basic(blob)),)
    assert decode_external_senders(encode_external_senders(senders)) == senders
    remove = Remove(len(blob))
    assert decode_exact(remove.to_bytes(), Proposal.decode) == remove
    commit = Commit(proposals=(remove,))
    assert decode_exact(commit.to_bytes(), Commit.decode) == commit


def test_leaf_checked_against_group() -> None:
    kp = make_key_package(b"dave")[0]
    group = Group()
    members = list(group.tree.leaves())
    leaves = GroupLeaves(members)
    leaves.check(kp.leaf_node)
    with pytest.raises(MLSProtocolError):
        leaves.check(members[0][1])  # repeats member 0's keys
    with pytest.raises(MLSProtocolError):
        needs = RequiredCapabilities(extension_types=(0x0A0A,))
        leaves.check(kp.leaf_node, required=needs)
    x509_only = attrs.evolve(kp.leaf_node, capabilities=Capabilities(credentials=(2,)))
    with pytest.raises(MLSProtocolError):
        leaves.check(x509_only)
    same_key = attrs.evolve(members[0][1], leaf_node_source=LeafNodeSource.UPDATE)
    with pytest.raises(MLSProtocolError):
        leaves.check(same_key, replacing=0)
    leaves.check(members[0][1], replacing=0)  # a commit path may keep the key
    leaves.put(len(members), kp.leaf_node)  # Dave is in: his keys are taken
    with pytest.raises(MLSProtocolError):
        leaves.check(kp.leaf_node)
    leaves.remove(len(members))  # and free again once he is removed
    leaves.check(kp.leaf_node)
    x509_member = attrs.evolve(
        kp.leaf_node, credential=Credential(credential_type=2, identity=b"x"),
        capabilities=Capabilities(credentials=(1, 2)),
    )  # fmt: skip
    leaves.put(len(members), x509_member)  # a member holding another credential type
    with pytest.raises(MLSProtocolError):  # a basic-only leaf cannot enter beside it
        leaves.check(make_key_package(b"erin")[0].leaf_node)


def test_tree_validation_options() -> None:
    group = Group()
    index, sig, enc = group.add(group.tree)
    group.privs[index], group.sigs[index] = TreeKEMPrivate(index, {2 * index: enc}), sig
    group.commit(0, adds=1)
    group.tree.validate(GROUP_ID, now=NOW, required=RequiredCapabilities())
    with pytest.raises(MLSProtocolError):
        group.tree.validate(GROUP_ID, now=NOW + 10**7)  # key_package lifetimes expired
    with pytest.raises(MLSProtocolError):
        group.tree.validate(GROUP_ID, required=RequiredCapabilities(extension_types=(0x0A0A,)))
    with pytest.raises(MLSAuthenticationError):
        group.tree.validate(b"another group")


def test_add_fills_leftmost_blank_then_extends() -> None:
    leaves = [make_key_package(b"y%d" % i)[0].leaf_node for i in range(9)]
    tree = RatchetTree.create(CS, leaves[0])
    assert [tree.add_leaf(leaf) for leaf in leaves[1:5]] == [1, 2, 3, 4]
    assert tree.n_leaves == 8
    tree.remove_leaf(3)
    tree.remove_leaf(1)
    staged = tree.copy()
    assert [staged.add_leaf(leaf) for leaf in leaves[5:9]] == [1, 3, 5, 6]
    assert [tree.add_leaf(leaf) for leaf in leaves[5:7]] == [1, 3]  # the copy is independent
    tree.remove_leaf(4)
    assert tree.n_leaves == 4  # truncated: leaf 4 was the only one in the right half
