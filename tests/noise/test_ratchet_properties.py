"""Properties of the in-session ratchet (issue 22 item 5), on the sans-I/O core.

A random schedule of sends, deliveries in any order, losses, duplicates,
reconnects (a new handshake: resumption bound to it) and restarts (the state
read back from its stored form) keeps these true:

* a delivered message opens exactly once, to the frame that was sent;
* a second copy, or a message of an earlier session, is a typed error that
  changes nothing;
* after the schedule, every message of the live session that was not lost opens.

And the compromise test: a snapshot of a side's keys taken at message k opens
nothing sent before k, and nothing the victim sends after its next DH step.
"""

from __future__ import annotations

import os
import random
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealwire.ratchet import (
    DuplicateMessageError,
    MessageDecryptError,
    _chain,
    concat,
)
from sealwire_noise import _ratchet as nr
from sealwire_noise._ratchet import Restart


def _keying(rng: random.Random) -> nr.Keying:
    return nr.keying(rng.randbytes(32), rng.randbytes(32), rng.randbytes(32))


@attrs.define
class World:
    """Two sides, the live handshake hash, and what is in flight each way."""

    sides: list[nr.NoiseRatchet]
    h: bytes
    rng: random.Random
    in_flight: list[list[tuple[bytes, bytes, bytes]]] = attrs.field(
        factory=lambda: [[], []]
    )  # per receiver: (session h, message, frame)
    delivered: set[bytes] = attrs.field(factory=set)
    lost: set[bytes] = attrs.field(factory=set)
    counter: int = 0

    def send(self, sender: int) -> None:
        frame = b"frame-%d" % self.counter
        self.counter += 1
        self.sides[sender], msg = nr.seal(self.sides[sender], frame, self.h, self.rng.randbytes)
        self.in_flight[1 - sender].append((self.h, msg, frame))

    def deliver(self, receiver: int, index: int, *, keep: bool) -> None:
        queue = self.in_flight[receiver]
        if not queue:
            return
        h, msg, frame = queue[index % len(queue)]
        if not keep:
            queue.remove((h, msg, frame))
        before = nr.encode(self.sides[receiver])
        if h != self.h or frame in self.delivered:
            with pytest.raises((MessageDecryptError, DuplicateMessageError)):
                nr.open_message(self.sides[receiver], msg, self.h, now=0, rng=self.rng.randbytes)
            assert nr.encode(self.sides[receiver]) == before  # nothing changed
            return
        opened = nr.open_message(self.sides[receiver], msg, self.h, now=0, rng=self.rng.randbytes)
        assert opened.frame == frame
        self.delivered.add(frame)
        self.sides[receiver] = opened.ratchet

    def lose(self, receiver: int, index: int) -> None:
        queue = self.in_flight[receiver]
        if queue:
            self.lost.add(queue.pop(index % len(queue))[2])

    def reconnect(self) -> None:
        keys = _keying(self.rng)
        hellos = [
            nr.hello(s, keys.handshake_hash, initiator=i == 0) for i, s in enumerate(self.sides)
        ]
        for i in (0, 1):
            resumed, how = nr.resolve(
                self.sides[i], hellos[1 - i], keys, initiator=i == 0, rng=self.rng.randbytes
            )
            assert how is Restart.RESUMED and resumed is self.sides[i]
        self.h = keys.handshake_hash

    def restart(self, side: int) -> None:
        self.sides[side] = nr.decode(nr.encode(self.sides[side]))
        self.reconnect()  # a restarted process reconnects


OPS = st.lists(
    st.tuples(
        st.sampled_from(["send", "deliver", "duplicate", "lose", "reconnect", "restart"]),
        st.integers(0, 1),
        st.integers(0, 50),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, seed=st.integers(0, 2**32))
def test_loss_reordering_duplication_reconnects_and_restarts(ops: list[Any], seed: int) -> None:
    rng = random.Random(seed)
    keys = _keying(rng)
    world = World(
        sides=[nr.start(keys, initiator=True, rng=rng.randbytes),
               nr.start(keys, initiator=False, rng=rng.randbytes)],
        h=keys.handshake_hash, rng=rng,
    )  # fmt: skip
    for kind, side, index in ops:
        if kind == "send":
            world.send(side)
        elif kind in ("deliver", "duplicate"):
            world.deliver(side, index, keep=kind == "duplicate")
        elif kind == "lose":
            world.lose(side, index)
        elif kind == "reconnect":
            world.reconnect()
        else:
            world.restart(side)
    # the end: everything of the live session that was not lost opens, once
    for receiver in (0, 1):
        while world.in_flight[receiver]:
            world.deliver(receiver, rng.randrange(64), keep=False)
    world.send(0)
    world.deliver(1, 0, keep=False)
    world.send(1)
    world.deliver(0, 0, keep=False)


# -- compromise -------------------------------------------------------------------------


def _try_open(message_key: bytes, message: bytes, ad: bytes) -> bytes | None:
    try:
        return _chain.aead_decrypt(
            message_key, message[_chain.HEADER_LEN :], concat(ad, message[: _chain.HEADER_LEN])
        )
    except MessageDecryptError:
        return None


@pytest.mark.parametrize("k", [1, 4, 9])
def test_a_snapshot_at_message_k_opens_nothing_before_k_nor_after_the_next_dh_step(k: int) -> None:
    rng = random.Random(k)
    keys = _keying(rng)
    alice = nr.start(keys, initiator=True, rng=rng.randbytes)
    bob = nr.start(keys, initiator=False, rng=rng.randbytes)
    h = keys.handshake_hash
    ad = nr._ad(alice, h)

    def send(sender: nr.NoiseRatchet, receiver: nr.NoiseRatchet, frame: bytes) -> Any:
        sender, msg = nr.seal(sender, frame, h, rng.randbytes)
        receiver = nr.open_message(receiver, msg, h, now=0, rng=rng.randbytes).ratchet
        return sender, receiver, msg

    sent_before: list[bytes] = []
    for n in range(k):
        alice, bob, msg = send(alice, bob, b"before-%d" % n)
        sent_before.append(msg)
    snapshot = alice.state  # everything Alice holds at message k: rk, cks, her ratchet key
    alice, bob, at_k = send(alice, bob, b"at k")

    # What the thief can do with Alice's sending chain key: every later key of the chain.
    chain, forward = snapshot.cks, []
    assert chain is not None
    for _ in range(3 * k + 8):
        chain, mk = _chain.kdf_ck(chain)
        forward.append(mk)
    assert any(_try_open(mk, at_k, ad) == b"\x00at k" for mk in forward)  # the window is real
    for msg in sent_before:  # ... but the chain is one-way: nothing before k opens
        assert all(_try_open(mk, msg, ad) is None for mk in forward)

    # Bob answers (a DH step on his side), Alice steps in turn and sends on a new chain.
    bob, alice, reply = send(bob, alice, b"bob's reply")
    alice, bob, after_step = send(alice, bob, b"after alice's next step")
    # The thief follows Bob's reply with Alice's stolen private key and root key ...
    bob_key = reply[:32]
    rk, bob_chain = _chain.kdf_rk(snapshot.rk, snapshot.dhs.exchange(bob_key), _chain.ROOT_INFO, 64)
    assert _try_open(_chain.kdf_ck(bob_chain)[1], reply, ad) == b"\x00bob's reply"
    # ... but Alice's new chain needs her fresh private key, which the snapshot lacks.
    assert after_step[:32] != at_k[:32]
    _rk2, guess = _chain.kdf_rk(rk, snapshot.dhs.exchange(bob_key), _chain.ROOT_INFO, 64)
    candidates = [guess, bob_chain, *forward]
    for start_key in candidates:
        ck = start_key
        for _ in range(4):
            ck, mk = _chain.kdf_ck(ck)
            assert _try_open(mk, after_step, ad) is None
    for mk in forward:
        assert _try_open(mk, after_step, ad) is None


def test_no_message_key_outlives_its_message() -> None:
    """After in-order delivery nothing is kept that would open a delivered message again."""
    rng = random.Random(7)
    keys = _keying(rng)
    alice = nr.start(keys, initiator=True, rng=os.urandom)
    bob = nr.start(keys, initiator=False, rng=os.urandom)
    h = keys.handshake_hash
    msgs = []
    for n in range(5):
        alice, msg = nr.seal(alice, b"%d" % n, h, os.urandom)
        bob = nr.open_message(bob, msg, h, now=0, rng=os.urandom).ratchet
        msgs.append(msg)
    assert bob.state.skipped == {}
    for msg in msgs:
        with pytest.raises(DuplicateMessageError):
            nr.open_message(bob, msg, h, now=0, rng=os.urandom)
