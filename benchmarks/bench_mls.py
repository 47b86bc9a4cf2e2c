"""MLS group benchmark: membership and messages at 10 to 10,000 members, beside pairwise Signal.

Run: ``uv run python benchmarks/bench_mls.py [--sizes 10,100,1000,10000] [--repeat R]``.

For each group size N, in one process on one core (cipher suite 1: X25519,
AES-128-GCM, SHA-256, Ed25519), the median over ``--repeat`` runs of:

* add: member A stages a commit adding one member (UpdatePath + Welcome with
  the whole ratchet tree), discarded afterwards so the group stays at N;
* update: A stages an empty commit with an UpdatePath (discarded);
* process: member R processes A's update commit (then A merges it);
* send / open: A encrypts a 256-byte application message, R decrypts it;
* join: a new member joins from the Welcome of A's add (whole ratchet tree in
  the GroupInfo), as a fresh joiner (signatures this process verified are
  forgotten first): ``join 1c`` with every leaf signature checked in this
  process, ``join`` with them spread over worker processes (one per core,
  :func:`sealwire_mls.signatures.start_verify_pool`; ``pool start`` is their
  start-up, paid once per process);
  ``floor``: the same number of Ed25519 key loads + verifications, one core,
  in the same run (the join's floor on one core), and ``1c/floor``,
  ``join/floor`` (the floor on two cores is half of it);
* HPKE/update: the HPKE encryptions in A's UpdatePath (expected about log2 N
  when the tree has no blank parents);
* signal N-pairwise: encrypting the same 256-byte message once per Double
  Ratchet session to N peers with ``sealwire_signal`` (sessions in steady
  state, one sending chain each): the cost of a group message sent pairwise.

Setup (not timed): A creates the group and adds N-1 members in one commit.
That leaves every parent node off A's direct path blank, so an update would
encrypt to about N leaves; as in a living group, where members commit over
time, the member at the leftmost leaf of each subtree on A's copath joins
and commits once with a path (log2 N commits), which fills A's copath and
gives the steady-state cost. R is the member at leaf 1.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

import sealwire_mls.crypto as mls_crypto
import sealwire_mls.signatures as signatures
from sealwire_mls.credentials import Credential, CredentialType
from sealwire_mls.crypto import cipher_suite
from sealwire_mls.extensions import Capabilities
from sealwire_mls.framing import PublicMessage
from sealwire_mls.group import Group
from sealwire_mls.keypackage import KeyPackage, LeafNode, LeafNodeSource, Lifetime
from sealwire_mls.welcome import MLSMessage
from sealwire_signal import DHKeyPair, encrypt, init_alice

SUITE = 1
PAYLOAD = b"x" * 256
SIZES = (10, 100, 1_000, 10_000)


def _key_package(suite: Any, name: bytes) -> tuple[KeyPackage, bytes, bytes, bytes]:
    sig_priv, sig_pub = suite.signature_key_pair()
    enc_priv, enc_pub = suite.hpke_key_pair()
    init_priv, init_pub = suite.hpke_key_pair()
    leaf = LeafNode(
        encryption_key=enc_pub, signature_key=sig_pub, credential=Credential.basic(name),
        capabilities=Capabilities(cipher_suites=(SUITE,), credentials=(CredentialType.BASIC,)),
        leaf_node_source=LeafNodeSource.KEY_PACKAGE, lifetime=Lifetime(0, 2**63),
    ).sign(suite, sig_priv)  # fmt: skip
    kp = KeyPackage(cipher_suite=SUITE, init_key=init_pub, leaf_node=leaf).sign(suite, sig_priv)
    return kp, init_priv, enc_priv, sig_priv


def build(n: int) -> tuple[Group, Group, list[tuple[KeyPackage, bytes, bytes, bytes]]]:
    """(A at leaf 0, R at leaf 1, spare KeyPackages) in a group of ``n`` with A's copath filled."""
    suite = cipher_suite(SUITE)
    people = [_key_package(suite, b"member-%d" % i) for i in range(n + 8)]
    kp, _, enc, sig = people[0]
    a = Group.create(
        SUITE, b"bench", kp.leaf_node, encryption_priv=enc, signature_priv=sig, random=os.urandom
    )
    _, welcome = a.commit(os.urandom, add=[p[0] for p in people[1:n]])
    a.merge_pending_commit()
    assert welcome is not None
    body = MLSMessage.from_bytes(welcome).body
    fillers = sorted({1, *(2**k for k in range(math.ceil(math.log2(n))) if 2**k < n)})
    joined = {
        i: Group.join(body, people[i][0], init_priv=people[i][1], encryption_priv=people[i][2],
                      signature_priv=people[i][3])
        for i in fillers
    }  # fmt: skip
    for i in fillers:  # each commits once with a path; everyone else processes it
        commit, _ = joined[i].commit(os.urandom)
        joined[i].merge_pending_commit()
        for j, other in joined.items():
            if j != i:
                other.process(commit)
        a.process(commit)
    return a, joined[1], people[n:]


def median_ms(step: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def hpke_count(commit: bytes) -> int:
    body = MLSMessage.from_bytes(commit).body
    assert isinstance(body, PublicMessage)
    path = body.content.content.path
    return sum(len(node.encrypted_path_secret) for node in path.nodes)


def _fresh_joiner() -> None:
    """Forget the signatures this process saw verified (a joiner is another process)."""
    mls_crypto.cipher_suite(SUITE).signature_checks.forget()


def join_ms(
    a: Group, person: tuple[KeyPackage, bytes, bytes, bytes], repeat: int
) -> dict[str, float]:
    """Joins from the Welcome of A's add: in this process, then spread over workers."""
    _, welcome = a.commit(os.urandom, add=[person[0]])
    a.discard_pending_commit()
    assert welcome is not None
    body = MLSMessage.from_bytes(welcome).body

    def join() -> None:
        _fresh_joiner()
        Group.join(body, person[0], init_priv=person[1], encryption_priv=person[2],
                   signature_priv=person[3])  # fmt: skip

    spread_min = signatures.PARALLEL_VERIFY_MIN
    out = {"join1c": median_ms(join, repeat)}  # no pool: every signature checked here
    try:
        out["start"] = median_ms(signatures.start_verify_pool, 1)
        signatures.PARALLEL_VERIFY_MIN = 1  # spread whatever the size
        out["join"] = median_ms(join, repeat)
    finally:
        signatures.PARALLEL_VERIFY_MIN = spread_min
        signatures.shutdown_verify_pool()
    return out


def verify_floor_ms(n: int, repeat: int) -> float:
    """``n`` Ed25519 public-key loads and verifications (300-byte messages), one core."""
    items = []
    for _ in range(n):
        key = ed25519.Ed25519PrivateKey.generate()
        message = os.urandom(300)
        items.append((key.public_key().public_bytes_raw(), key.sign(message), message))

    def verify_all() -> None:
        for public, signature, message in items:
            ed25519.Ed25519PublicKey.from_public_bytes(public).verify(signature, message)

    return median_ms(verify_all, repeat)


def measure(n: int, repeat: int) -> dict[str, float]:
    a, r, spare = build(n)
    out: dict[str, float] = {}
    out.update(join_ms(a, spare[1], repeat))
    out["floor"] = verify_floor_ms(n, repeat)

    def add() -> None:
        a.commit(os.urandom, add=[spare[0][0]])
        a.discard_pending_commit()

    def update() -> None:
        a.commit(os.urandom)
        a.discard_pending_commit()

    out["add"], out["update"] = median_ms(add, repeat), median_ms(update, repeat)
    commits = []
    for _ in range(repeat):
        commits.append(a.commit(os.urandom)[0])
        a.merge_pending_commit()
    out["hpke"] = statistics.median(hpke_count(c) for c in commits)
    it = iter(commits)
    out["process"] = median_ms(lambda: r.process(next(it)), repeat)
    messages = []
    out["send"] = median_ms(lambda: messages.append(a.encrypt(PAYLOAD, os.urandom)), repeat)
    it = iter(messages)
    out["open"] = median_ms(lambda: r.process(next(it)), repeat)
    out["pairwise"] = pairwise_ms(n)
    return out


def pairwise_ms(n: int) -> float:
    """Encrypt one message for each of ``n`` Double Ratchet sessions (steady state)."""
    sessions = []
    for _ in range(n):
        bob = DHKeyPair.generate(os.urandom)
        state = init_alice(os.urandom(32), bob.public, os.urandom)
        state, _, _ = encrypt(state, PAYLOAD, b"ad", os.urandom)  # the session's first message
        sessions.append(state)
    start = time.perf_counter()
    for state in sessions:
        encrypt(state, PAYLOAD, b"ad", os.urandom)
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    header = (
        f"{'members':>8} {'add ms':>8} {'update ms':>10} {'process ms':>11} {'send ms':>8} "
        f"{'open ms':>8} {'HPKE/upd':>9} {'log2 N':>7} {'signal N-pairwise ms':>21} "
        f"{'join 1c ms':>11} {'pool start ms':>14} {'join ms':>8} {'floor ms':>9} "
        f"{'1c/floor':>9} {'join/floor':>11}"
    )
    print(header)
    for n in (int(s) for s in args.sizes.split(",")):
        started = time.perf_counter()
        m = measure(n, args.repeat)
        print(
            f"{n:>8} {m['add']:>8.2f} {m['update']:>10.2f} {m['process']:>11.2f} "
            f"{m['send']:>8.3f} {m['open']:>8.3f} {m['hpke']:>9.0f} {math.log2(n):>7.1f} "
            f"{m['pairwise']:>21.2f} {m['join1c']:>11.1f} {m['start']:>14.1f} "
            f"{m['join']:>8.1f} {m['floor']:>9.1f} {m['join1c'] / m['floor']:>9.2f} "
            f"{m['join'] / m['floor']:>11.2f}"
            f"   (setup+run {time.perf_counter() - started:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
