"""Item 4: a random conversation survives loss, reordering, duplication and restarts.

Each agent keeps its session only as the store's bytes (through the state
codec) plus an in-memory copy that a "restart" throws away. Sending commits
the new state before the envelope leaves; receiving commits before the frame
is recorded as read. At the end every message that was not dropped has been
read exactly once, and every extra copy was rejected.
"""

from __future__ import annotations

import itertools

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealwire.errors import (
    AuthenticationError,
    DecodeError,
    RemoteProtocolError,
    SealwireError,
)
from sealwire.store import SqliteStore, StoreKey
from sealwire_signal import (
    DuplicateMessageError,
    Envelope,
    accept_session,
    card_digest,
    decode_session,
    encode_session,
    open_envelope,
    seal_frame,
    start_session,
)

NAMESPACE = "signal.sessions"


class Disk:
    """Where committed sessions live: a real encrypted SqliteStore file."""

    def __init__(self, path):
        self._store = SqliteStore.open(path, StoreKey.generate())

    def put(self, key: str, value: bytes, card: bytes) -> None:
        """A session record and the peer card it names, in one transaction."""
        with self._store.transaction() as tx:
            tx.put(NAMESPACE, key, value)
            tx.put(NAMESPACE, f"card/{card_digest(card).hex()}", card)

    def get(self, key: str) -> bytes | None:
        return self._store.get(NAMESPACE, key)

    def close(self) -> None:
        self._store.close()


@attrs.define
class Party:
    name: str
    disk: Disk
    memory: object = None  # the in-memory Session, or None after a restart

    def session(self):
        if self.memory is None:
            raw = self.disk.get("peer")
            self.memory = None if raw is None else decode_session(raw, self._card)
        return self.memory

    def _card(self, digest: bytes) -> bytes | None:
        return self.disk.get(f"card/{digest.hex()}")

    def commit(self, session) -> None:
        self.disk.put("peer", encode_session(session), session.peer_card)
        self.memory = session


actions = st.lists(
    st.tuples(
        st.sampled_from(["send", "send", "deliver", "deliver", "drop", "dup", "restart"]),
        st.sampled_from(["a", "b"]),
        st.integers(0, 1000),
    ),
    max_size=70,
)


@settings(max_examples=60, deadline=None)
@given(he=st.booleans(), pq=st.booleans(), script=actions, seed=st.integers(0, 2**32))
def test_random_conversation_reads_every_kept_message_once(
    kit, tmp_path_factory, he, pq, script, seed
):
    rng = kit.seeded_rng(seed)
    alice_keys, bob_keys = kit.make_agent(rng, pq=pq), kit.make_agent(rng, pq=pq)
    folder = tmp_path_factory.mktemp("conv")
    parties = {"a": Party("a", Disk(folder / "a.db")), "b": Party("b", Disk(folder / "b.db"))}
    verified = bob_keys.bundle.verify(
        bob_keys.signing.public_key(), one_time=bob_keys.one_time,
        one_time_kem=bob_keys.one_time_kem,
    )  # fmt: skip
    parties["a"].commit(start_session(
        local_id="a", peer_id="b", identity=alice_keys.identity, peer=verified, rng=rng,
        header_encryption=he,
    ))  # fmt: skip
    in_flight: dict[str, list[tuple[bytes, bytes]]] = {"a": [], "b": []}  # to recipient
    sent, dropped, read = set(), set(), []
    history: list[tuple[str, bytes, bytes]] = []
    counter = itertools.count()

    def receive(who: str, raw: bytes) -> None:
        party, envelope = parties[who], Envelope.from_bytes(raw)
        session = party.session()
        if session is None or (
            envelope.prekey is not None and envelope.prekey.ephemeral_key != session.base_key
        ):
            session, frame = accept_session(
                local_id="b", envelope=envelope, identity=bob_keys.identity,
                signed_prekey=bob_keys.spk, one_time_prekey=bob_keys.opk,
                kem_prekey=bob_keys.kem_one_time if pq else None, now=0.0, rng=rng,
            )  # fmt: skip
        else:
            session, frame = open_envelope(session, envelope, now=0.0, rng=rng)
        party.commit(session)  # committed before the frame is handed on
        read.append(frame)

    for action, who, pick in script:
        party, other = parties[who], "b" if who == "a" else "a"
        if action == "send" and party.session() is not None:
            frame = b"%s-%d" % (who.encode(), next(counter))
            session, envelope = seal_frame(party.session(), frame, negotiation=b"n", rng=rng)
            party.commit(session)
            in_flight[other].append((frame, envelope.to_bytes()))
            history.append((other, frame, envelope.to_bytes()))
            sent.add(frame)
        elif action == "restart":
            party.memory = None
        elif in_flight[who]:
            frame, raw = in_flight[who][pick % len(in_flight[who])]
            if action != "dup":
                in_flight[who].remove((frame, raw))
            if action == "drop":
                if frame not in read:  # a copy may have been delivered by "dup" before
                    dropped.add(frame)
            else:
                _deliver(receive, who, raw, frame, read)
    for who in ("a", "b"):
        for frame, raw in in_flight[who]:
            _deliver(receive, who, raw, frame, read)
    assert sorted(read) == sorted(sent - dropped)
    for party in parties.values():  # a replay of everything, after a restart, reads nothing
        party.memory = None
    for who, frame, raw in history:
        if frame in read:
            _deliver(receive, who, raw, frame, read)
    for party in parties.values():
        party.disk.close()


def _deliver(receive, who, raw, frame, read) -> None:
    """Deliver a copy: a first copy must open, a later copy must be rejected."""
    if frame in read:
        try:
            receive(who, raw)
        except (DuplicateMessageError, AuthenticationError):
            return
        raise AssertionError("a duplicate was accepted")
    receive(who, raw)


@settings(max_examples=60, deadline=None)
@given(he=st.booleans(), data=st.data())
def test_tampered_envelopes_fail_and_change_nothing(kit, he, data):
    """Any flipped byte: a typed error, the session untouched, the genuine copy still opens."""
    rng = kit.seeded_rng(77)
    alice_keys, bob_keys = kit.make_agent(rng), kit.make_agent(rng)
    verified = bob_keys.bundle.verify(bob_keys.signing.public_key(), one_time=bob_keys.one_time)
    alice = start_session(local_id="a", peer_id="b", identity=alice_keys.identity,
                          peer=verified, rng=rng, header_encryption=he)  # fmt: skip
    alice, first = seal_frame(alice, b"first", negotiation=b"n", rng=rng)
    bob, _ = accept_session(
        local_id="b", envelope=first, identity=bob_keys.identity, signed_prekey=bob_keys.spk,
        one_time_prekey=bob_keys.opk, kem_prekey=bob_keys.kem_last_resort, now=0.0, rng=rng,
    )  # fmt: skip
    alice, second = seal_frame(alice, b"second", negotiation=b"n", rng=rng)
    raw = bytearray(second.to_bytes())
    raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    before = encode_session(bob)
    with pytest.raises(SealwireError) as caught:
        open_envelope(bob, Envelope.from_bytes(bytes(raw)), now=0.0, rng=rng)
    assert isinstance(caught.value, (DecodeError, AuthenticationError, RemoteProtocolError))
    assert encode_session(bob) == before
    _, frame = open_envelope(bob, second, now=0.0, rng=rng)
    assert frame == b"second"
