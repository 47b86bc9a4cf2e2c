"""MLS post-quantum suites against the classical suite 1: commit and join at 10 to 1,000 members.

Run: ``uv run python benchmarks/bench_mls_pq.py [--sizes 10,100,1000] [--repeat R]
[--suites 1,0xf0a1,...]``.

For each cipher suite (RFC 9420 suite 1 first, then every draft-ietf-mls-pq-ciphersuites
suite this engine implements) and group size N, in this one process, the median over
``--repeat`` runs (interleaved across the suites, so that the load of a shared machine
hits all of them alike) of the CPU time (``time.process_time``: on a shared machine,
wall time would also count the neighbours) of:

* commit: member A stages an empty commit with an UpdatePath (discarded);
* process: member R processes A's commit;
* add: A stages a commit adding one member (UpdatePath + Welcome with the tree);
* join: a fresh joiner (the signatures this process verified forgotten) joins from
  that Welcome, every leaf signature checked in this process;

and the bytes of a KeyPackage, of A's commit and of the Welcome adding one member
(the whole ratchet tree rides in its GroupInfo). Every PQ row gives its ratio to
suite 1 at the same N, measured in the same run. Setup (untimed) is that of
``bench_mls.py``: A adds N-1 members in one commit, then the member at the leftmost
leaf of each subtree on A's copath commits once, which fills A's copath.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from sealwire_mls.credentials import Credential, CredentialType
from sealwire_mls.crypto import PQ_CIPHER_SUITES, cipher_suite
from sealwire_mls.extensions import Capabilities
from sealwire_mls.group import Group
from sealwire_mls.keypackage import KeyPackage, LeafNode, LeafNodeSource, Lifetime
from sealwire_mls.welcome import MLSMessage

SIZES = (10, 100, 1_000)
CLASSICAL = 1

Person = tuple[KeyPackage, bytes, bytes, bytes]


def _key_package(suite_id: int, name: bytes) -> Person:
    suite = cipher_suite(suite_id)
    sig_priv, sig_pub = suite.signature_key_pair()
    enc_priv, enc_pub = suite.hpke_key_pair()
    init_priv, init_pub = suite.hpke_key_pair()
    leaf = LeafNode(
        encryption_key=enc_pub, signature_key=sig_pub, credential=Credential.basic(name),
        capabilities=Capabilities(cipher_suites=(suite_id,), credentials=(CredentialType.BASIC,)),
        leaf_node_source=LeafNodeSource.KEY_PACKAGE, lifetime=Lifetime(0, 2**63),
    ).sign(suite, sig_priv)  # fmt: skip
    kp = KeyPackage(cipher_suite=suite_id, init_key=init_pub, leaf_node=leaf).sign(suite, sig_priv)
    return kp, init_priv, enc_priv, sig_priv


def _join(body: Any, person: Person) -> Group:
    return Group.join(
        body, person[0], init_priv=person[1], encryption_priv=person[2], signature_priv=person[3]
    )


def build(suite_id: int, n: int) -> tuple[Group, Group, list[Person]]:
    """(A at leaf 0, R at leaf 1, spare members) in a group of ``n`` with A's copath filled."""
    people = [_key_package(suite_id, b"member-%d" % i) for i in range(n + 4)]
    kp, _, enc, sig = people[0]
    a = Group.create(
        suite_id, b"bench", kp.leaf_node, encryption_priv=enc, signature_priv=sig,
        random=os.urandom,
    )  # fmt: skip
    _, welcome = a.commit(os.urandom, add=[p[0] for p in people[1:n]])
    a.merge_pending_commit()
    assert welcome is not None
    body = MLSMessage.from_bytes(welcome).body
    fillers = sorted({1, *(2**k for k in range(math.ceil(math.log2(n))) if 2**k < n)})
    joined = {i: _join(body, people[i]) for i in fillers}
    for i in fillers:
        commit, _ = joined[i].commit(os.urandom)
        joined[i].merge_pending_commit()
        for j, other in joined.items():
            if j != i:
                other.process(commit)
        a.process(commit)
    return a, joined[1], people[n:]


class Bench:
    """One suite at one size: the group built (untimed), and one run of each step."""

    def __init__(self, suite_id: int, n: int) -> None:
        self.suite_id = suite_id
        self.a, self.r, self.spare = build(suite_id, n)
        self.times: dict[str, list[float]] = {k: [] for k in ("commit", "process", "add", "join")}
        self.sizes: dict[str, float] = {"kp_bytes": len(self.spare[2][0].to_bytes())}
        _, welcome = self.a.commit(os.urandom, add=[self.spare[1][0]])
        self.a.discard_pending_commit()
        assert welcome is not None
        self.sizes["welcome_bytes"] = len(welcome)
        self.welcome = MLSMessage.from_bytes(welcome).body
        self._checks = cipher_suite(suite_id).signature_checks
        self._commit_bytes: list[int] = []

    def _time(self, key: str, step: Callable[[], object]) -> None:
        start = time.process_time()
        step()
        self.times[key].append(time.process_time() - start)

    def run_once(self) -> None:
        a = self.a

        def stage_commit() -> None:
            a.commit(os.urandom)
            a.discard_pending_commit()

        def stage_add() -> None:
            a.commit(os.urandom, add=[self.spare[0][0]])
            a.discard_pending_commit()

        def join() -> None:
            self._checks.forget()  # a joiner is another process: it has verified nothing
            _join(self.welcome, self.spare[1])

        self._time("commit", stage_commit)
        commit, _ = a.commit(os.urandom)
        a.merge_pending_commit()
        self._commit_bytes.append(len(commit))
        self._time("process", lambda: self.r.process(commit))
        self._time("add", stage_add)
        self._time("join", join)

    def result(self) -> dict[str, float]:
        out = {k: statistics.median(v) * 1e3 for k, v in self.times.items()}
        out["commit_bytes"] = statistics.median(self._commit_bytes)
        return out | self.sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--repeat", type=int, default=7)
    default_suites = [CLASSICAL, *sorted(PQ_CIPHER_SUITES.values())]
    parser.add_argument("--suites", default=",".join(f"{s:#x}" for s in default_suites))
    args = parser.parse_args()
    suites = [int(s, 0) for s in args.suites.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"{'suite':<56} {'N':>5} {'commit ms':>10} {'process ms':>11} {'add ms':>8} "
        f"{'join ms':>9} {'KP B':>6} {'commit B':>9} {'Welcome B':>10}  ratios to suite 1 "
        "(commit/process/add/join; Welcome bytes)"
    )
    base: dict[int, dict[str, float]] = {}
    for n in sizes:
        started = time.perf_counter()
        benches = [Bench(suite_id, n) for suite_id in suites]
        for _ in range(args.repeat):  # interleaved: a burst of load hits every suite alike
            for bench in benches:
                bench.run_once()
        for suite_id, bench in zip(suites, benches, strict=True):
            m = bench.result()
            if suite_id == CLASSICAL:
                base[n] = m
            ratios = ""
            if suite_id != CLASSICAL and n in base:
                b = base[n]
                ratios = "  " + " ".join(
                    f"{m[k] / b[k]:.1f}x" for k in ("commit", "process", "add", "join")
                ) + f"; {m['welcome_bytes'] / b['welcome_bytes']:.1f}x"  # fmt: skip
            print(
                f"{cipher_suite(suite_id).name:<56} {n:>5} {m['commit']:>10.2f} "
                f"{m['process']:>11.2f} {m['add']:>8.2f} {m['join']:>9.1f} "
                f"{m['kp_bytes']:>6.0f} {m['commit_bytes']:>9.0f} {m['welcome_bytes']:>10.0f}"
                f"{ratios}",
                flush=True,
            )
        print(f"  (N={n}: setup and runs {time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
