"""Signal session records: format version 1 (JSON, card embedded) beside version 2
(binary, card stored once by SHA-256), issue 14.

Run: ``uv run python benchmarks/signal_records.py [--seconds 0.3]``

Two SignalBindings with real signed cards exchange messages through an
in-memory prekey directory; their stores note every transactional write. In
the same run, for the initiator's session while it still carries the initial
message part ("pending") and for a session after replies ("steady"):

* encode + decode of one record, v1 (the released JSON writer, kept in
  ``tests/helpers/signal_v1.py``, and today's reader of v1 records) and v2; µs, best of
  ROUNDS slices of about ``--seconds``;
* the record's size, and the bytes one commit writes to the store: v1 is the
  session record as the released version wrote it on every message; v2 is what
  the binding wrote for that message (measured through the store).

``--pq``: identities with ML-DSA-65 keys (larger cards, hybrid-signed initial
messages).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from sealwire.agent._card import build_card
from sealwire.binding import BindingContext, Negotiation
from sealwire.identity import Identity, TrustMode, TrustStore, verify_card
from sealwire.ratchet import DHKeyPair
from sealwire.relay import FetchedPrekeys, mailbox_address
from sealwire.store import MemoryStore, StoreTransaction
from sealwire_signal import Session, card_digest, decode_session, encode_session
from sealwire_signal._binding import SignalBinding
from sealwire_signal._peer_sessions import SESSION_NAMESPACE

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "helpers"))
from signal_v1 import encode_v1

ROUNDS = 5
"""Slices per figure, the best one kept: enough for one quiet slice on a shared machine."""
BATCH = 50
"""Encode+decode pairs per timed step: amortises the clock read."""
RELAY = "https://relay.bench"


class _Directory:
    """The relay's prekey directory in memory (publish, fetch, count)."""

    def __init__(self, agent_id: str, shared: dict[Any, Any]) -> None:
        self.agent_id, self.shared = agent_id, shared

    def at(self, url: str) -> _Directory:
        return self

    async def publish_prekeys(self, binding: str, bundle: bytes, one_time: Any) -> None:
        entry = self.shared.setdefault((self.agent_id, binding), [b"", {}])
        entry[0] = bundle
        for pool, keys in one_time.items():
            entry[1].setdefault(pool, {}).update(keys)

    async def fetch_prekeys(self, agent_id: str, binding: str) -> FetchedPrekeys:
        bundle, pools = self.shared[(agent_id, binding)]
        taken = {}
        for pool, keys in pools.items():
            first = next(iter(keys), None)
            taken[pool] = None if first is None else (first, keys.pop(first))
        return FetchedPrekeys(bundle, taken)

    async def count_prekeys(self, binding: str) -> dict[str, int]:
        _, pools = self.shared.get((self.agent_id, binding), [b"", {}])
        return {pool: len(keys) for pool, keys in pools.items()}


class _Counting:
    def __init__(self, tx: StoreTransaction, written: list[int]) -> None:
        self._tx, self._written = tx, written

    def get(self, namespace: str, key: str) -> bytes | None:
        return self._tx.get(namespace, key)

    def put(self, namespace: str, key: str, value: bytes) -> None:
        if namespace == SESSION_NAMESPACE:
            self._written[-1] += len(value)
        self._tx.put(namespace, key, value)

    def delete(self, namespace: str, key: str) -> bool:
        return self._tx.delete(namespace, key)

    def keys(self, namespace: str, prefix: str = "") -> list[str]:
        return self._tx.keys(namespace, prefix)


class CountingStore(MemoryStore):
    """Notes the session bytes each transaction writes (one entry per transaction)."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[int] = []

    @contextmanager
    def transaction(self) -> Iterator[StoreTransaction]:
        self.written.append(0)
        with super().transaction() as tx:
            yield _Counting(tx, self.written)


def agent(shared: dict[Any, Any], pq: bool) -> SignalBinding:
    me = Identity.generate(post_quantum=pq)
    card = verify_card(build_card(
        me, name="bench agent", description="Signal record benchmark", version="1.0",
        bindings=[SignalBinding], listen_urls=(), options={"signal": {}},
        relay_address=mailbox_address(RELAY, me.agent_id),
    ))  # fmt: skip
    store = CountingStore()
    return SignalBinding(BindingContext(
        identity=me, card=card, store=store, trust=TrustStore(store, TrustMode.TOFU),
        relay=_Directory(me.agent_id, shared),  # type: ignore[arg-type]  # the prekey calls only
        clock=time.time, options={},
    ))  # fmt: skip


def best_us(step: Callable[[], object], seconds: float) -> float:
    """µs per call of ``step``: the best of ROUNDS slices of about ``seconds``."""
    best = float("inf")
    for _ in range(ROUNDS):
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            for _ in range(BATCH):
                step()
            count += BATCH
        best = min(best, elapsed / count * 1e6)
    return best


async def sessions(pq: bool) -> dict[str, tuple[Session, int]]:
    """Real sessions, each with the session bytes its binding wrote committing it."""
    shared: dict[Any, Any] = {}
    alice, bob = agent(shared, pq), agent(shared, pq)
    await alice.publish_prekeys()
    await bob.publish_prekeys()
    uri = SignalBinding.info.uri
    to_bob = Negotiation(chosen=uri, initiator_offers=(uri,), responder_offers=(uri,))
    store: Any = alice.context.store
    envelope = await alice.seal(bob.context.card, b"x" * 256, to_bob)  # the first message
    first = (alice._sessions.load(bob._agent_id).current, store.written[-1])  # type: ignore[union-attr]
    envelope = await alice.seal(bob.context.card, b"x" * 256, to_bob)  # still pending
    pending = (alice._sessions.load(bob._agent_id).current, store.written[-1])  # type: ignore[union-attr]
    await bob.open(envelope)
    for _ in range(3):
        await alice.open(await bob.seal(alice.context.card, b"y" * 256, to_bob))
        await bob.open(await alice.seal(bob.context.card, b"x" * 256, to_bob))
    steady = (alice._sessions.load(bob._agent_id).current, store.written[-1])  # type: ignore[union-attr]
    print(f"card: {len(first[0].peer_card)} bytes; first commit with a peer writes "
          f"{first[1]} session bytes (the card once)\n")  # fmt: skip
    return {"pending": pending, "steady": steady}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.3)
    parser.add_argument("--pq", action="store_true", help="identities with ML-DSA-65 keys")
    args = parser.parse_args()
    measured = asyncio.run(sessions(args.pq))
    private = measured["steady"][0].ratchet.dhs.private_bytes_for_storage()
    scalar = best_us(lambda: DHKeyPair.from_private_bytes(private), args.seconds)
    print(f"(either decode reloads the ratchet key: X25519 public key from the private "
          f"one {scalar:.1f} µs)\n")  # fmt: skip
    print(f"{'session':8} {'fmt':3} {'encode µs':>9} {'decode µs':>9} {'both µs':>8} "
          f"{'record B':>8} {'commit writes B':>15}")  # fmt: skip
    for name, (session, written) in measured.items():
        v1, v2 = encode_v1(session), encode_session(session)
        cards = {card_digest(session.peer_card): session.peer_card}.get
        rows: tuple[tuple[str, Callable[[Session], bytes], bytes, int], ...] = (
            ("v1", encode_v1, v1, len(v1)),
            ("v2", encode_session, v2, written),
        )
        both = {}
        for fmt, encode, record, written in rows:
            enc = best_us(partial(encode, session), args.seconds)
            dec = best_us(partial(decode_session, record, cards), args.seconds)
            both[fmt] = enc + dec
            print(f"{name:8} {fmt:3} {enc:9.1f} {dec:9.1f} {both[fmt]:8.1f} "
                  f"{len(record):8} {written:15}")  # fmt: skip
        print(f"{name:8} v2: encode+decode {both['v1'] / both['v2']:.1f}x faster, record "
              f"{len(v1) / len(v2):.1f}x smaller\n")  # fmt: skip


if __name__ == "__main__":
    main()
