"""Our MLS engine against an independent implementation: ts-mls (npm, TypeScript, RFC 9420).

ts-mls runs in Node processes (``tests/interop/mls_ts/peer.mjs``, one member
each) driven over stdin/stdout, one JSON object per line. Suite 1
(MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519), basic credentials. After every
step all members must agree on the epoch, the epoch authenticator (§8.7), an
exported secret (§8.5) and the roster, and read one message from each member:

a. ts-mls creates the group and adds us; we join from its Welcome (§12.4.3).
b. we create the group and add ts-mls; it joins from our Welcome.
c. UpdatePath commits both ways (§12.4), then a third member added and removed
   (§12.1.1, §12.1.3) by each implementation in turn; the removed member
   cannot open the next message, before or after it processed its removal.
d. tampered messages are refused with a typed error and leave our group
   unchanged; the genuine message still works afterwards.
e. a fleet of both kinds over trees with blank and unmerged leaves (§7.9) and
   truncation (§7.8); one ts-mls 1.6.4 bug found there is pinned as an xfail.
f. every post-quantum suite of draft-ietf-mls-pq-ciphersuites we implement
   (X-Wing, ML-KEM-768, ML-KEM-1024; Ed25519, ECDSA and ML-DSA-44/65/87), on our
   provisional code points: each implementation creates, adds the other, both
   commit, each adds and removes a third member, messages and exporter agree.
   ts-mls 1.6.4 has no such suites itself: peer.mjs assembles them from its
   parts (hpke-js's ML-KEM and X-Wing HPKE, @noble/post-quantum's ML-DSA) with
   DeriveKeyPair per draft-ietf-hpke-pq (see peer.mjs).

Needs Node.js >= 20.19 and ``npm ci --prefix tests/interop/mls_ts``; without
them these tests fail (they are never skipped).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealwire.errors import SealwireError
from sealwire.identity import Identity
from sealwire_mls.agents import agent_key_package, agent_suites
from sealwire_mls.credentials import Credential, CredentialType
from sealwire_mls.crypto import PQ_CIPHER_SUITES, cipher_suite
from sealwire_mls.errors import (
    MLSAuthenticationError,
    MLSDecodeError,
    MLSProtocolError,
    MLSStateError,
)
from sealwire_mls.extensions import Capabilities
from sealwire_mls.framing import WireFormat
from sealwire_mls.group import ApplicationMessage, CommitApplied, Group
from sealwire_mls.keypackage import KeyPackage, LeafNode, LeafNodeSource, Lifetime
from sealwire_mls.welcome import MLSMessage

PEER_DIR = Path(__file__).parent / "mls_ts"
SUITE = 1
#: Seconds to wait for one answer of a peer (a commit takes milliseconds, Node
#: starts in well under a second): a hung peer fails the test instead of stalling.
ANSWER_TIMEOUT = 15.0
#: ts-mls refuses KeyPackages that live longer than a month (its lifetime config).
TS_LIFETIME = 30 * 24 * 3600
EXPORT_LABEL = "sealwire interop"
EXPORT_CONTEXT = b"\x00context\xff"
NOW = int(time.time())  # both sides check KeyPackage lifetimes against the real clock
#: What ``receive`` gives for the commit that removed the receiving member.
REMOVED = -1


class PeerError(Exception):
    """ts-mls refused a command (the text names the ts-mls error class)."""


def _jsonable(value: Any) -> Any:
    """Bytes as hex, also inside lists (the peer's convention)."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


class TsPeer:
    """One ts-mls member in a Node subprocess (see ``mls_ts/peer.mjs``)."""

    def __init__(self, node: str, suite: int = SUITE) -> None:
        self._proc = subprocess.Popen(
            [node, str(PEER_DIR / "peer.mjs"), str(suite)], cwd=PEER_DIR, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

    def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Send one command; its answer, or :class:`PeerError` if ts-mls refused it."""
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        request = {"cmd": cmd} | {k: _jsonable(v) for k, v in fields.items()}
        proc.stdin.write(json.dumps(request).encode() + b"\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], ANSWER_TIMEOUT)
        line = proc.stdout.readline() if ready else b""
        if not line:
            proc.kill()
            raise AssertionError(f"ts-mls gave no answer to {cmd}: {proc.stderr.read()!r}")
        answer: dict[str, Any] = json.loads(line)
        if not answer.pop("ok"):
            raise PeerError(answer["error"])
        return answer

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for pipe in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def ts_peer() -> Iterator[Callable[..., TsPeer]]:
    """Factory of ts-mls peers, killed at teardown; fails (never skips) without Node or npm deps."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js (>= 20.19) is needed for the ts-mls interop tests")
    if not (PEER_DIR / "node_modules" / "ts-mls").is_dir():
        pytest.fail("ts-mls is not installed: run `npm ci --prefix tests/interop/mls_ts`")
    peers: list[TsPeer] = []

    def start(suite: int = SUITE) -> TsPeer:
        peers.append(TsPeer(node, suite))
        return peers[-1]

    yield start
    for peer in peers:
        peer.close()


# -- members of both kinds behind one face ------------------------------------------------


@attrs.frozen
class _PlainKeyPackage:
    """A KeyPackage with its own signature key (suites whose scheme is not Ed25519)."""

    key_package: KeyPackage
    init_priv: bytes
    encryption_priv: bytes
    signature_priv: bytes


def plain_key_package(suite_id: int) -> _PlainKeyPackage:
    suite = cipher_suite(suite_id)
    sig_priv, sig_pub = suite.signature_key_pair()
    enc_priv, enc_pub = suite.hpke_key_pair()
    init_priv, init_pub = suite.hpke_key_pair()
    leaf = LeafNode(
        encryption_key=enc_pub, signature_key=sig_pub, credential=Credential.basic(b"sealwire"),
        capabilities=Capabilities(cipher_suites=(suite_id,), credentials=(CredentialType.BASIC,)),
        leaf_node_source=LeafNodeSource.KEY_PACKAGE, lifetime=Lifetime(NOW - 60, NOW + TS_LIFETIME),
    ).sign(suite, sig_priv)  # fmt: skip
    kp = KeyPackage(cipher_suite=suite_id, init_key=init_pub, leaf_node=leaf).sign(suite, sig_priv)
    return _PlainKeyPackage(kp, init_priv, enc_priv, sig_priv)


class OurMember:
    """A member on our engine (``sealwire_mls.group.Group``), with a Sealwire agent's
    KeyPackage (basic credential = agent id, its Ed25519 or ML-DSA-65 identity key)
    where the suite signs with one of those, else one with a fresh key of the suite's
    scheme."""

    def __init__(self, suite: int = SUITE) -> None:
        self.suite = suite
        identity = Identity.generate(post_quantum=True)
        self.kp: Any = (
            agent_key_package(identity, now=NOW, suite_id=suite)
            if suite in agent_suites(identity)
            else plain_key_package(suite)
        )
        self._group: Group | None = None

    @property
    def group(self) -> Group:
        assert self._group is not None
        return self._group

    def key_package(self) -> bytes:
        return MLSMessage(WireFormat.KEY_PACKAGE, self.kp.key_package).to_bytes()

    def create(self) -> None:
        self._group = Group.create(
            self.suite, b"interop", self.kp.key_package.leaf_node, random=os.urandom,
            encryption_priv=self.kp.encryption_priv, signature_priv=self.kp.signature_priv,
        )  # fmt: skip

    def join(self, welcome: bytes) -> None:
        # No tree given: it must come from the GroupInfo's ratchet_tree extension.
        self._group = Group.join(
            MLSMessage.from_bytes(welcome).body, self.kp.key_package, init_priv=self.kp.init_priv,
            encryption_priv=self.kp.encryption_priv, signature_priv=self.kp.signature_priv,
        )  # fmt: skip

    def _commit(self, **changes: Any) -> tuple[bytes, bytes | None]:
        message, welcome = self.group.commit(os.urandom, now=NOW, **changes)
        self.group.merge_pending_commit()  # the test is the delivery service
        return message, welcome

    def add(self, key_packages: list[bytes], *, path: bool = True) -> tuple[bytes, bytes]:
        kps = [MLSMessage.from_bytes(kp).body for kp in key_packages]
        assert all(isinstance(kp, KeyPackage) for kp in kps)
        message, welcome = self._commit(add=kps, path=path)
        assert welcome is not None
        return message, welcome

    def update(self) -> bytes:
        return self._commit()[0]

    def remove(self, leaves: list[int]) -> bytes:
        return self._commit(remove=leaves)[0]

    def receive(self, message: bytes) -> bytes | int:
        """Application data, or the new epoch for a commit (:data:`REMOVED` if it removed us)."""
        event = self.group.process(message, now=NOW)
        if isinstance(event, ApplicationMessage):
            return event.data
        assert isinstance(event, CommitApplied)
        return REMOVED if event.removed_me else event.epoch

    def send(self, data: bytes) -> bytes:
        return self.group.encrypt(data, os.urandom)

    def view(self) -> tuple[int, bytes, bytes]:
        """(epoch, epoch authenticator, exported secret)."""
        g = self.group
        return (
            g.epoch,
            g.epoch_authenticator(),
            g.export_secret(EXPORT_LABEL.encode(), EXPORT_CONTEXT, 32),
        )

    def roster(self) -> list[int]:
        return [index for index, _leaf in self.group.members]


class TheirMember:
    """A ts-mls member; its commits travel as Public- or PrivateMessages (``public``)."""

    def __init__(self, peer: TsPeer, *, public: bool = False) -> None:
        self.peer, self.public = peer, public
        answer = peer.call(
            "key_package", identity=b"ts-mls", not_before=NOW - 60, not_after=NOW + TS_LIFETIME
        )
        self._kp = bytes.fromhex(answer["key_package"])

    def key_package(self) -> bytes:
        return self._kp

    def create(self) -> None:
        self.peer.call("create", group_id=b"interop")

    def join(self, welcome: bytes) -> None:
        self.peer.call("join", welcome=welcome)

    def _commit(self, cmd: str, **fields: Any) -> dict[str, Any]:
        answer = self.peer.call(cmd, public=self.public, **fields)
        wire = WireFormat.PUBLIC_MESSAGE if self.public else WireFormat.PRIVATE_MESSAGE
        answer["commit"] = bytes.fromhex(answer["commit"])
        assert MLSMessage.from_bytes(answer["commit"]).wire_format is wire
        return answer

    def add(self, key_packages: list[bytes]) -> tuple[bytes, bytes]:
        answer = self._commit("add", key_packages=key_packages)
        return answer["commit"], bytes.fromhex(answer["welcome"])

    def update(self) -> bytes:
        commit: bytes = self._commit("commit_update")["commit"]
        return commit

    def remove(self, leaves: list[int]) -> bytes:
        commit: bytes = self._commit("remove", leaves=leaves)["commit"]
        return commit

    def receive(self, message: bytes) -> bytes | int:
        answer = self.peer.call("process", message=message)
        if answer["kind"] == "application":
            return bytes.fromhex(answer["data"])
        assert answer["kind"] == "commit"
        return int(answer["epoch"]) if answer["active"] else REMOVED

    def send(self, data: bytes) -> bytes:
        return bytes.fromhex(self.peer.call("encrypt", data=data)["message"])

    def view(self) -> tuple[int, bytes, bytes]:
        auth = self.peer.call("epoch_authenticator")
        exported = self.peer.call(
            "export_secret", label=EXPORT_LABEL, context=EXPORT_CONTEXT, length=32
        )
        return auth["epoch"], bytes.fromhex(auth["value"]), bytes.fromhex(exported["secret"])

    def roster(self) -> list[int]:
        members: list[int] = self.peer.call("state")["members"]
        return members


Member = OurMember | TheirMember


class Fleet:
    """Members by leaf index. The test is the delivery service: each commit goes to
    every other member, then :meth:`check` runs."""

    def __init__(self, creator: Member) -> None:
        creator.create()
        self.members: dict[int, Member] = {0: creator}

    def deliver(self, committer: int, message: bytes) -> None:
        """Every other member processes the commit and reaches the committer's epoch."""
        epoch = self.members[committer].view()[0]
        for leaf, member in self.members.items():
            if leaf != committer:
                assert member.receive(message) == epoch

    def update(self, committer: int) -> None:
        self.deliver(committer, self.members[committer].update())
        self.check()

    def add(self, committer: int, new: dict[int, Member], **options: Any) -> None:
        kps = [m.key_package() for m in new.values()]
        message, welcome = self.members[committer].add(kps, **options)
        self.deliver(committer, message)
        for member in new.values():
            member.join(welcome)
        self.members.update(new)
        self.check()

    def remove(self, committer: int, leaves: list[int]) -> None:
        """Remove ``leaves``; none of them opens the next message, before or after it
        processed its removal."""
        message = self.members[committer].remove(leaves)
        gone = [self.members.pop(leaf) for leaf in leaves]
        self.deliver(committer, message)
        self.check()
        after = self.members[committer].send(b"after the removal")
        for member in gone:
            with pytest.raises((PeerError, MLSProtocolError)):
                member.receive(after)  # still in the old epoch
            assert member.receive(message) == REMOVED
            with pytest.raises((PeerError, MLSStateError)):
                member.receive(after)
        for leaf, member in self.members.items():
            if leaf != committer:
                assert member.receive(after) == b"after the removal"

    def check(self, rounds: int = 1) -> None:
        """Same epoch, authenticator, exporter and roster everywhere; each member's
        messages read by all the others."""
        views = {leaf: member.view() for leaf, member in self.members.items()}
        assert len(set(views.values())) == 1, views
        for member in self.members.values():
            assert member.roster() == sorted(self.members)
        for n in range(rounds):
            for sender, member in self.members.items():
                data = b"%d from leaf %d " % (n, sender) + os.urandom(n * 100)
                message = member.send(data)
                for leaf, other in self.members.items():
                    if leaf != sender:
                        assert other.receive(message) == data


# -- a, b: joining each other's groups ---------------------------------------------------

PUBLIC = pytest.mark.parametrize("public", [False, True], ids=["private", "public"])


@PUBLIC
def test_a_ts_creates_we_join(ts_peer: Callable[[], TsPeer], public: bool) -> None:
    fleet = Fleet(TheirMember(ts_peer(), public=public))
    fleet.add(0, {1: OurMember()})  # a path-less commit: no path secret in the Welcome
    fleet.check(rounds=3)


def test_b_we_create_ts_joins(ts_peer: Callable[[], TsPeer]) -> None:
    fleet = Fleet(OurMember())
    fleet.add(0, {1: TheirMember(ts_peer())})  # our commits carry an UpdatePath
    fleet.check(rounds=3)


# -- c: commits both ways, a third member added and removed -------------------------------


@PUBLIC
def test_c_ts_adds_and_removes_our_third_member(
    ts_peer: Callable[[], TsPeer], public: bool
) -> None:
    fleet = Fleet(OurMember())
    fleet.add(0, {1: TheirMember(ts_peer(), public=public)})
    fleet.update(0)
    fleet.update(1)
    fleet.add(1, {2: OurMember()})
    fleet.remove(1, [2])
    assert sorted(fleet.members) == [0, 1]


def test_c_we_add_and_remove_a_ts_third_member(ts_peer: Callable[[], TsPeer]) -> None:
    fleet = Fleet(TheirMember(ts_peer()))
    fleet.add(0, {1: OurMember()})
    fleet.update(1)
    fleet.update(0)
    fleet.add(1, {2: TheirMember(ts_peer())})  # ts-mls to ts-mls through our commit
    fleet.remove(1, [2])
    assert sorted(fleet.members) == [0, 1]


# -- d: tampering ---------------------------------------------------------------------------


def ts_and_us(ts_peer: Callable[[], TsPeer], *, public: bool = False) -> tuple[Fleet, Group]:
    fleet = Fleet(TheirMember(ts_peer(), public=public))
    ours = OurMember()
    fleet.add(0, {1: ours})
    return fleet, ours.group


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def refused_unchanged(group: Group, data: bytes, error: type[SealwireError]) -> None:
    """``data`` is refused with ``error`` and the group is exactly as before."""
    before = (group.epoch, group.epoch_authenticator(), group.members)
    with pytest.raises(error):
        group.process(data, now=NOW)
    assert (group.epoch, group.epoch_authenticator(), group.members) == before


def test_d_tampered_application_message(ts_peer: Callable[[], TsPeer]) -> None:
    fleet, group = ts_and_us(ts_peer)
    message = fleet.members[0].send(b"genuine")
    refused_unchanged(group, flip(message, len(message) - 1), MLSAuthenticationError)  # AEAD tag
    refused_unchanged(group, flip(message, len(message) - 40), MLSAuthenticationError)
    refused_unchanged(group, message[:-1], MLSDecodeError)
    refused_unchanged(group, message + b"\x00", MLSDecodeError)
    event = group.process(message, now=NOW)
    assert isinstance(event, ApplicationMessage) and event.data == b"genuine"
    fleet.check()


@PUBLIC
def test_d_tampered_commit(ts_peer: Callable[[], TsPeer], public: bool) -> None:
    fleet, group = ts_and_us(ts_peer, public=public)
    commit = fleet.members[0].update()
    # The last bytes are the AEAD tag (private) or the membership tag (public, §6.2).
    refused_unchanged(group, flip(commit, len(commit) - 1), MLSAuthenticationError)
    refused_unchanged(group, flip(commit, len(commit) // 2), SealwireError)
    assert group.process(commit, now=NOW) == CommitApplied(
        committer=0, epoch=2, added=(), removed=()
    )
    fleet.check()


def test_d_any_flipped_bit_is_refused(ts_peer: Callable[[], TsPeer]) -> None:
    """Property: a ts-mls message with any one bit flipped is refused with a typed
    error and changes nothing; the genuine message still opens afterwards."""
    fleet, group = ts_and_us(ts_peer)
    message = fleet.members[0].send(b"property")
    before = (group.epoch, group.epoch_authenticator())

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.integers(0, len(message) * 8 - 1))
    def refused(bit: int) -> None:
        tampered = bytearray(message)
        tampered[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(SealwireError):
            group.process(bytes(tampered), now=NOW)
        assert (group.epoch, group.epoch_authenticator()) == before

    refused()
    event = group.process(message, now=NOW)
    assert isinstance(event, ApplicationMessage) and event.data == b"property"


def test_d_ts_refuses_our_tampered_message(ts_peer: Callable[[], TsPeer]) -> None:
    """The other direction: ts-mls refuses our tampered message, then opens the genuine one."""
    fleet, group = ts_and_us(ts_peer)
    message = group.encrypt(b"genuine", os.urandom)
    with pytest.raises(PeerError):
        fleet.members[0].receive(flip(message, len(message) - 1))
    assert fleet.members[0].receive(message) == b"genuine"
    fleet.check()


# -- e: a mixed fleet -------------------------------------------------------------------------


def fleet_with_unmerged_leaves(ts_peer: Callable[[], TsPeer], joiners: dict[int, Member]) -> Fleet:
    """Five members of both kinds, then ts-mls adds ``joiners`` at leaves 5 and 6
    (a path-less commit). Node 3 then lists unmerged leaf 2, the root 2, 5 and 6."""
    fleet = Fleet(OurMember())
    fleet.add(0, {1: TheirMember(ts_peer()), 2: OurMember(), 3: TheirMember(ts_peer(), public=True),
                  4: OurMember()})  # fmt: skip
    fleet.update(1)  # ts-mls path over the tree of our Welcome
    fleet.remove(3, [2])  # ts-mls removes one of ours: leaf 2 blank
    fleet.add(4, {2: TheirMember(ts_peer())}, path=False)  # ours: 3 and 7 list leaf 2
    fleet.add(1, joiners)
    return fleet


def test_e_mixed_fleet(ts_peer: Callable[[], TsPeer]) -> None:
    """Up to seven members of both kinds; commits by each kind over trees with blank
    leaves, unmerged leaves (§7.9) and truncation (§7.8)."""
    fleet = fleet_with_unmerged_leaves(ts_peer, {5: OurMember(), 6: OurMember()})
    fleet.update(2)  # ts-mls path past unmerged leaves
    fleet.update(5)
    fleet.remove(0, [6, 5])  # ours removes the right edge: the tree truncates
    fleet.add(3, {5: TheirMember(ts_peer())})  # the tree grows again
    fleet.remove(3, [1])  # ts-mls removes ts-mls
    fleet.update(4)
    fleet.update(5)
    assert sorted(fleet.members) == [0, 2, 3, 4, 5]


@pytest.mark.xfail(
    strict=True,
    raises=PeerError,
    reason="ts-mls 1.6.4 bug: its join wants every non-blank node on an unmerged leaf's whole "
    "direct path to hold the same unmerged_leaves list; RFC 9420 §12.4.3.1 asks only that the "
    "nodes between the leaf and the listing parent include the leaf (fixed upstream after 1.6.4)",
)
def test_e_ts_joins_tree_with_nested_unmerged_leaves(ts_peer: Callable[[], TsPeer]) -> None:
    """The one disagreement found: our joiner accepts the tree, ts-mls refuses it."""
    ours, theirs = OurMember(), TheirMember(ts_peer())
    try:
        fleet_with_unmerged_leaves(ts_peer, {5: ours, 6: theirs})
    except PeerError as exc:
        assert "non-blank intermediate node must list leaf node" in str(exc)
        assert ours.group.epoch == 5  # our joiner took the same Welcome and tree
        raise


# -- f: the post-quantum suites ------------------------------------------------------------

PQ_SUITES = pytest.mark.parametrize(
    "suite", sorted(PQ_CIPHER_SUITES.values()), ids=lambda i: f"{i:#06x}"
)


@PQ_SUITES
def test_f_pq_ts_creates_we_join_both_commit_add_remove(
    ts_peer: Callable[..., TsPeer], suite: int
) -> None:
    fleet = Fleet(TheirMember(ts_peer(suite)))
    fleet.add(0, {1: OurMember(suite)})
    fleet.update(1)  # our UpdatePath: ts-mls derives the node keys (DeriveKeyPair)
    fleet.update(0)  # theirs: we derive them
    fleet.add(1, {2: TheirMember(ts_peer(suite))})  # ts-mls joins through our Welcome
    fleet.remove(0, [2])  # ts-mls removes it
    fleet.add(0, {2: OurMember(suite)})  # ours joins through ts-mls's Welcome
    fleet.remove(1, [2])  # we remove it
    fleet.check(rounds=2)
    assert sorted(fleet.members) == [0, 1]


@PQ_SUITES
def test_f_pq_we_create_ts_joins(ts_peer: Callable[..., TsPeer], suite: int) -> None:
    fleet = Fleet(OurMember(suite))
    fleet.add(0, {1: TheirMember(ts_peer(suite), public=True)})  # with an UpdatePath
    fleet.update(1)
    fleet.update(0)
    fleet.check(rounds=2)
