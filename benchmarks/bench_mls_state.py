"""What a group member writes to its store for each message it receives, once K members
have sent in the epoch: the whole secret tree (before) and the sender's record (now).

Run: ``uv run python benchmarks/bench_mls_state.py [--senders 10,100,1000] [--messages M]``.

For each K, in one process: a group of K + 1 members (cipher suite 1) created by
one member, the reader, whose secret tree then derives the ratchets of K senders
(what their first messages of the epoch do to it). Then, ``--messages`` times, one
more message from one of the senders (its ratchet stepped) and the state a member
must commit before handing the message on, in one transaction of an encrypted
SQLite store (:class:`sealwire.store.SqliteStore`, as an agent keeps it), two ways,
in the same run:

* before: the whole RatchetsBlob (every sender's ratchets), as each message wrote
  it until the leaves had records of their own;
* now: :meth:`GroupStorage.save_ratchets`, which writes the sender's record alone.

Printed: bytes written and CPU µs per message each way (the state's encoding and its
transaction; the ratchet step itself, the same both ways, is not counted), and their ratio.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench_mls import SUITE, _key_package

from sealwire.store import SqliteStore, StoreKey
from sealwire_mls._members import Roster
from sealwire_mls._storage import NS_RATCHETS, GroupStorage
from sealwire_mls.crypto import cipher_suite
from sealwire_mls.group import Group
from sealwire_mls.persistence import dump_group, dump_secret_tree
from sealwire_mls.secret_tree import RatchetType

SENDERS = (10, 100, 1_000)


def reader_of(senders: int) -> Group:
    """The creator of a group of ``senders`` + 1, its tree holding every sender's ratchets."""
    suite = cipher_suite(SUITE)
    people = [_key_package(suite, b"member-%d" % i) for i in range(senders + 1)]
    kp, _, enc, sig = people[0]
    reader = Group.create(
        SUITE, b"bench", kp.leaf_node, encryption_priv=enc, signature_priv=sig, random=os.urandom
    )
    reader.commit(os.urandom, add=[p[0] for p in people[1:]])
    reader.merge_pending_commit()
    tree = reader._epoch.secret_tree
    for leaf in range(1, senders + 1):
        tree.key_nonce(leaf, RatchetType.APPLICATION, 0)
    return reader


def per_message(
    reader: Group, store: SqliteStore, messages: int, *, whole: bool
) -> tuple[int, float]:
    """(bytes written, CPU µs) per received message, the state written ``whole`` or not."""
    storage = GroupStorage(store)
    storage.save(b"bench", Roster(reader, {}))
    tree = reader._epoch.secret_tree
    senders = tree.n_leaves - 1
    written, used = 0, 0.0
    for m in range(messages):
        leaf = 1 + m % senders
        tree.commit(tree.stage_send(leaf, RatchetType.APPLICATION))  # its next generation
        if not whole:  # what save_ratchets is about to write (outside the time taken)
            records = dump_secret_tree(reader)
            written += len(records.nodes or b"") + sum(map(len, records.leaves.values()))
        cpu = time.process_time()
        if whole:
            blob = dump_group(reader)[1]
            with store.transaction() as tx:
                tx.put(NS_RATCHETS, b"bench".hex(), blob)
        else:
            storage.save_ratchets(b"bench", reader)
        used += time.process_time() - cpu
        if whole:
            written += len(blob)
    return written // messages, used * 1e6 / messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", default=",".join(map(str, SENDERS)))
    parser.add_argument("--messages", type=int, default=300)
    args = parser.parse_args()
    print(
        f"{'senders':>8} {'before B':>9} {'before us':>10} {'now B':>6} {'now us':>7} {'ratio':>6}"
    )
    for senders in (int(s) for s in args.senders.split(",")):
        reader = reader_of(senders)
        with tempfile.TemporaryDirectory() as tmp:
            store = SqliteStore.open(Path(tmp) / "agent.sqlite3", StoreKey.generate())
            try:
                old_bytes, old_us = per_message(reader, store, args.messages, whole=True)
                new_bytes, new_us = per_message(reader, store, args.messages, whole=False)
            finally:
                store.close()
        print(
            f"{senders:>8} {old_bytes:>9} {old_us:>10.0f} {new_bytes:>6} {new_us:>7.0f} "
            f"{old_us / new_us:>6.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
