"""SignalBinding's stored session records: v2, the peer card stored once, v1 upgrade
(issue 14)."""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
from signal_binding_world import Agent, make_agent, pair, seal
from signal_v1 import encode_v1

from sealwire.store import MemoryStore, SqliteStore, StoreKey
from sealwire_signal import EnvelopeDecodeError, card_digest, decode_session, encode_session
from sealwire_signal._peer_sessions import SESSION_NAMESPACE


class _RecordingTransaction:
    def __init__(self, tx, puts) -> None:
        self._tx, self._puts = tx, puts

    def get(self, namespace, key):
        return self._tx.get(namespace, key)

    def put(self, namespace, key, value):
        self._puts.append((namespace, key, len(value)))
        self._tx.put(namespace, key, value)

    def delete(self, namespace, key):
        return self._tx.delete(namespace, key)

    def keys(self, namespace, prefix=""):
        return self._tx.keys(namespace, prefix)


class RecordingStore(MemoryStore):
    """A MemoryStore that notes every transactional put: (namespace, key, value length)."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: list[tuple[str, str, int]] = []

    @contextmanager
    def transaction(self):
        with super().transaction() as tx:
            yield _RecordingTransaction(tx, self.puts)


def _card_keys(agent: Agent, peer: Agent) -> list[str]:
    return agent.store.keys(SESSION_NAMESPACE, f"{peer.identity.agent_id}/card/")


def _named_card_keys(agent: Agent, peer: Agent) -> set[str]:
    """The card keys the peer's stored session records name."""
    peer_id = peer.identity.agent_id
    named = set()

    def lookup(digest):
        named.add(f"{peer_id}/card/{digest.hex()}")
        return agent.store.get(SESSION_NAMESPACE, f"{peer_id}/card/{digest.hex()}")

    for slot in ("current", "archived"):
        raw = agent.store.get(SESSION_NAMESPACE, f"{peer_id}/{slot}")
        if raw is not None:
            decode_session(raw, lookup)
    return named


async def test_the_peer_card_is_stored_once_not_with_every_message(world):
    alice, bob = await pair(world, make_store=RecordingStore)
    for i in range(3):
        assert (await bob.binding.open(await seal(alice, bob, b"a%d" % i))).frame == b"a%d" % i
        assert (await alice.binding.open(await seal(bob, alice, b"b%d" % i))).frame == b"b%d" % i
    for agent, peer in ((alice, bob), (bob, alice)):
        peer_id = peer.identity.agent_id
        card_puts = [key for ns, key, _ in agent.store.puts if key.startswith(f"{peer_id}/card/")]
        assert len(card_puts) == 1  # with the first commit, never again
        assert _card_keys(agent, peer) == card_puts
        sessions = [n for ns, key, n in agent.store.puts if key == f"{peer_id}/current"]
        assert len(sessions) == 6 and max(sessions[2:]) < 1024  # no card inside
        raw = agent.store.get(SESSION_NAMESPACE, f"{peer_id}/current")
        assert raw.startswith(b"SWSS\x02")
        card = agent.store.get(SESSION_NAMESPACE, card_puts[0])
        assert card == json.dumps(dict(peer.card.card), separators=(",", ":")).encode()
    bob = bob.restart()  # the card is found again by its digest
    assert (await bob.binding.open(await seal(alice, bob, b"after"))).frame == b"after"


async def test_cards_of_a_rekeyed_peer_are_deleted_with_their_last_session(world):
    directory, clock = world
    alice, bob = await pair(world)
    seen = set()
    for generation in range(5):
        assert (await alice.binding.open(await seal(bob, alice, b"hi %d" % generation))).frame
        reply = await seal(alice, bob, b"re %d" % generation)
        assert (await bob.binding.open(reply)).frame == b"re %d" % generation
        keys = _card_keys(alice, bob)
        assert set(keys) == _named_card_keys(alice, bob)
        assert len(keys) == min(generation + 1, 2)  # the current and the archived session's
        seen.update(keys)
        assert alice.store.keys(SESSION_NAMESPACE, bob.identity.agent_id) == sorted(
            [f"{bob.identity.agent_id}/{slot}" for slot in ("bases", "current")]
            + ([f"{bob.identity.agent_id}/archived"] if generation else [])
            + keys
        )
        # Bob loses his state and comes back with a newly signed card (same identity):
        # his next message starts a new session, and Alice archives the previous one.
        bob = make_agent(directory, clock, identity=bob.identity,
                         description=f"test agent, generation {generation + 1}")  # fmt: skip
        await bob.binding.publish_prekeys()
    assert len(seen) == 5  # each generation's card was stored, and all but two are gone


async def test_a_tampered_or_missing_stored_card_is_a_decode_error(world):
    alice, bob = await pair(world)
    await bob.binding.open(await seal(alice, bob, b"hi"))
    (key,) = _card_keys(bob, alice)
    card = bob.store.get(SESSION_NAMESPACE, key)
    bob.store.put(SESSION_NAMESPACE, key, card.replace(b"test agent", b"test agenT"))
    with pytest.raises(EnvelopeDecodeError) as caught:
        await bob.restart().binding.open(await seal(alice, bob, b"tampered"))
    assert caught.value.field == "session.peer_card"
    bob.store.delete(SESSION_NAMESPACE, key)
    with pytest.raises(EnvelopeDecodeError) as caught:
        await bob.restart().binding.open(await seal(alice, bob, b"missing"))
    assert caught.value.field == "session.peer_card"


def _downgrade_to_v1(agent: Agent, peer: Agent) -> None:
    """Rewrite the agent's sessions with ``peer`` as the released version wrote them:
    v1 records, no card keys."""
    peer_id = peer.identity.agent_id
    with agent.store.transaction() as tx:
        for key in tx.keys(SESSION_NAMESPACE, f"{peer_id}/card/"):
            tx.delete(SESSION_NAMESPACE, key)
    for slot in ("current", "archived"):
        raw = agent.store.get(SESSION_NAMESPACE, f"{peer_id}/{slot}")
        if raw is not None:
            session = agent.binding._sessions.load(peer_id)
            stored = session.current if slot == "current" else session.archived
            agent.store.put(SESSION_NAMESPACE, f"{peer_id}/{slot}", encode_v1(stored))


@pytest.mark.parametrize("he", [False, True])
async def test_v1_sessions_load_and_are_rewritten_as_v2(world, tmp_path, he):
    directory, clock = world
    key = StoreKey.generate()
    alice = make_agent(directory, clock, options={"header_encryption": he},
                       store=SqliteStore.open(tmp_path / "alice.db", key))  # fmt: skip
    bob = make_agent(directory, clock, store=SqliteStore.open(tmp_path / "bob.db", key))
    await alice.binding.publish_prekeys()
    await bob.binding.publish_prekeys()
    # Both start at once: each side has a current and an archived session.
    to_bob, to_alice = await seal(alice, bob, b"a1"), await seal(bob, alice, b"b1")
    assert (await bob.binding.open(to_bob)).frame == b"a1"
    assert (await alice.binding.open(to_alice)).frame == b"b1"
    in_flight = await seal(alice, bob, b"sent before the upgrade")
    for agent, peer in ((alice, bob), (bob, alice)):
        _downgrade_to_v1(agent, peer)
        assert agent.store.get(SESSION_NAMESPACE, f"{peer.identity.agent_id}/current")[:1] == b"{"
        assert _card_keys(agent, peer) == []
    alice, bob = alice.restart(), bob.restart()  # the upgraded release reads the v1 records
    assert (await bob.binding.open(in_flight)).frame == b"sent before the upgrade"
    for i in range(2):
        assert (await bob.binding.open(await seal(alice, bob, b"a%d" % i))).frame == b"a%d" % i
        assert (await alice.binding.open(await seal(bob, alice, b"b%d" % i))).frame == b"b%d" % i
    for agent, peer in ((alice, bob), (bob, alice)):
        peer_id = peer.identity.agent_id
        for slot in ("current", "archived"):
            raw = agent.store.get(SESSION_NAMESPACE, f"{peer_id}/{slot}")
            assert raw is None or raw.startswith(b"SWSS\x02")
        keys = _card_keys(agent, peer)
        assert set(keys) == _named_card_keys(agent, peer) and len(keys) == 1
        card = json.dumps(dict(peer.card.card), separators=(",", ":")).encode()
        assert keys == [f"{peer_id}/card/{card_digest(card).hex()}"]
    alice, bob = alice.restart(), bob.restart()
    assert (await bob.binding.open(await seal(alice, bob, b"after"))).frame == b"after"
    alice.store.close()
    bob.store.close()


async def test_an_unchanged_archived_session_is_not_rewritten(world):
    alice, bob = await pair(world, make_store=RecordingStore)
    to_bob, to_alice = await seal(alice, bob, b"a1"), await seal(bob, alice, b"b1")
    assert (await bob.binding.open(to_bob)).frame == b"a1"
    assert (await alice.binding.open(to_alice)).frame == b"b1"  # each side archives one
    # Both now send on the session Bob accepted: Bob's current and archived swap, once.
    assert (await bob.binding.open(await seal(alice, bob, b"a"))).frame == b"a"
    assert (await alice.binding.open(await seal(bob, alice, b"b"))).frame == b"b"
    for agent, peer in ((alice, bob), (bob, alice)):
        assert agent.store.get(SESSION_NAMESPACE, f"{peer.identity.agent_id}/archived")
        agent.store.puts.clear()
    for i in range(3):
        assert (await bob.binding.open(await seal(alice, bob, b"a%d" % i))).frame == b"a%d" % i
        assert (await alice.binding.open(await seal(bob, alice, b"b%d" % i))).frame == b"b%d" % i
    for agent, peer in ((alice, bob), (bob, alice)):
        peer_id = peer.identity.agent_id
        archived = agent.store.get(SESSION_NAMESPACE, f"{peer_id}/archived")
        keys = [key for _, key, _ in agent.store.puts]
        assert keys == [f"{peer_id}/current"] * 6  # the archived one stays as it was
        agent = agent.restart()  # and reads back as it was
        entry = agent.binding._sessions.load(peer_id)
        assert encode_session(entry.archived) == archived
