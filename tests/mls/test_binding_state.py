"""The group binding's persisted formats: versioned group state, invitations, rosters.

A stored group must load into an equal group (same epoch secrets, same ratchets,
same pending commit); a blob of another version, truncated or corrupted, must
raise StateFormatError and nothing else; invitations are hostile input and
give an Invite or MLSDecodeError only.
"""

from __future__ import annotations

import contextlib
import json
import os

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealwire.identity import Identity
from sealwire.store import MemoryStore
from sealwire_mls._members import Invite, Roster, decode_cards, encode_cards
from sealwire_mls._storage import NS_EPOCH, NS_RATCHETS, GroupStorage
from sealwire_mls.agents import agent_key_package
from sealwire_mls.errors import MLSDecodeError, MLSProtocolError
from sealwire_mls.group import Group
from sealwire_mls.persistence import (
    STATE_VERSION,
    StateFormatError,
    dump_group,
    dump_secret_tree,
    load_group,
)
from sealwire_mls.welcome import MLSMessage

NOW = 1_800_000_000


def _pair() -> tuple[Group, Group, bytes]:
    a, b = (agent_key_package(Identity.generate(), now=NOW) for _ in range(2))
    alice = Group.create(
        1, b"g", a.key_package.leaf_node, encryption_priv=a.encryption_priv,
        signature_priv=a.signature_priv, random=os.urandom,
    )  # fmt: skip
    _, welcome = alice.commit(os.urandom, add=[b.key_package], now=NOW)
    alice.merge_pending_commit()
    assert welcome is not None
    bob = Group.join(
        MLSMessage.from_bytes(welcome).body, b.key_package, init_priv=b.init_priv,
        encryption_priv=b.encryption_priv, signature_priv=b.signature_priv,
    )  # fmt: skip
    return alice, bob, b.signature_priv


def test_a_stored_group_loads_into_the_same_group():
    alice, bob, bob_sig = _pair()
    first = alice.encrypt(b"one", os.urandom)
    assert bob.process(first).data == b"one"
    epoch, ratchets = dump_group(bob)
    again = load_group(epoch, ratchets, signature_priv=bob_sig)
    assert again.epoch_authenticator() == bob.epoch_authenticator()
    with pytest.raises(MLSProtocolError):  # the replay is refused after a reload too
        again.process(first)
    assert again.process(alice.encrypt(b"two", os.urandom)).data == b"two"
    commit, _ = again.commit(os.urandom)
    again.merge_pending_commit()
    alice.process(commit)
    assert alice.export_secret(b"l", b"c", 32) == again.export_secret(b"l", b"c", 32)


def test_a_group_without_its_ratchets_starts_the_epochs_secret_tree_afresh():
    alice, bob, bob_sig = _pair()
    epoch, _ = dump_group(bob)
    fresh = load_group(epoch, None, signature_priv=bob_sig)
    assert fresh.process(alice.encrypt(b"x", os.urandom)).data == b"x"


def test_other_versions_and_corruption_are_refused():
    _, bob, sig = _pair()
    epoch, ratchets = dump_group(bob)
    other = (STATE_VERSION + 1).to_bytes(2, "big")
    with pytest.raises(StateFormatError):
        load_group(other + epoch[2:], ratchets, signature_priv=sig)
    with pytest.raises(StateFormatError):
        load_group(epoch, other + ratchets[2:], signature_priv=sig)
    with pytest.raises(StateFormatError):
        load_group(epoch[:-1], ratchets, signature_priv=sig)
    with pytest.raises(StateFormatError):
        load_group(epoch + b"\x00", ratchets, signature_priv=sig)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_damage_to_a_stored_group_gives_state_format_errors_only(data):
    _, bob, sig = _STATE
    epoch, ratchets = dump_group(bob)
    tree = dump_secret_tree(bob, whole=True)  # the nodes, and each leaf's own record
    assert tree.nodes is not None and tree.leaves
    leaf = next(iter(tree.leaves.values()))
    which = data.draw(st.sampled_from(["epoch", "ratchets", "nodes", "leaf"]))
    blob = bytearray(
        {"epoch": epoch, "ratchets": ratchets, "nodes": tree.nodes, "leaf": leaf}[which]
    )
    cut = data.draw(st.integers(0, len(blob)))
    flip = data.draw(st.integers(0, len(blob) - 1))
    blob[flip] ^= data.draw(st.integers(1, 255))
    damaged = bytes(blob[:cut]) if data.draw(st.booleans()) else bytes(blob)
    try:
        if which == "epoch":
            load_group(damaged, ratchets, signature_priv=sig)
        elif which == "ratchets":
            load_group(epoch, damaged, signature_priv=sig)
        elif which == "nodes":
            load_group(epoch, damaged, leaf_ratchets=[leaf], signature_priv=sig)
        else:
            load_group(epoch, tree.nodes, leaf_ratchets=[damaged], signature_priv=sig)
    except StateFormatError:
        pass


def _after_a_message() -> tuple[Group, Group, bytes]:
    alice, bob, sig = _pair()
    bob.process(alice.encrypt(b"hello", os.urandom))  # a leaf's ratchets to store
    return alice, bob, sig


_STATE = _after_a_message()


def test_invitations_round_trip():
    invite = Invite(group_id=b"g", seq=7, welcome=b"w", group_info=b"", external_joins=True)
    assert Invite.from_bytes(invite.to_bytes()) == invite
    elsewhere = attrs.evolve(invite, relay="https://relay-a.example")
    assert Invite.from_bytes(elsewhere.to_bytes()) == elsewhere
    record = json.loads(invite.to_bytes())
    del record["relay"]  # an inviter that names no relay: the joiner's own
    assert Invite.from_bytes(json.dumps(record).encode()).relay == ""
    for bad in (3, ["x"], "h" * 3000):
        with pytest.raises(MLSDecodeError, match="relay"):
            Invite.from_bytes(json.dumps(dict(record, relay=bad)).encode())
    assert "w" not in repr(invite).split("seq")[1]  # secrets-bearing fields are not shown


def test_deeply_nested_json_is_a_decode_error():
    nested = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(MLSDecodeError):
        Invite.from_bytes(nested)
    with pytest.raises(MLSDecodeError):
        decode_cards(nested)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_arbitrary_invitations_give_invites_or_decode_errors(data):
    with contextlib.suppress(MLSDecodeError):
        Invite.from_bytes(data)


def test_card_lists_in_authenticated_data():
    cards = [{"name": "a"}, {"name": "b"}]
    assert decode_cards(encode_cards(cards)) == cards
    assert decode_cards(b"") == []
    for bad in (b"{", b"[]", b'{"cards": 3}', b'{"cards": [1]}', b"\xff"):
        with pytest.raises(MLSDecodeError):
            decode_cards(bad)


def test_rosters_round_trip_and_refuse_corruption():
    alice, _, _ = _pair()
    roster = Roster(alice, {"a": {"n": 1}}, external_joins=True, expected={"b": {"n": 2}})
    again = Roster.from_stored(alice, {"a": {"n": 1}}, roster.policy_json())
    assert (again.cards, again.expected, again.external_joins, again.relay) == (
        roster.cards,
        roster.expected,
        True,
        None,
    )
    roster.relay = "https://relay-a.example"
    assert Roster.from_stored(alice, {}, roster.policy_json()).relay == roster.relay
    bad_relay = b'{"v": 2, "expected": {}, "policy": {"externalJoins": false}, "relay": 3}'
    for bad in (b"{}", b"[]", b'{"v": 1, "expected": {}, "policy": {}}', b"\xff", bad_relay):
        with pytest.raises(MLSDecodeError):
            Roster.from_stored(alice, {}, bad)


def test_cards_are_stored_one_by_one_as_members_come_and_go():
    from sealwire.store import MemoryStore
    from sealwire_mls._storage import NS_CARDS, GroupStorage

    alice, _, sig = _pair()
    store = MemoryStore()
    storage = GroupStorage(store)
    roster = Roster(alice, {"a": {"n": 1}, "b": {"n": 2}})
    storage.save(b"g", roster)
    assert sorted(store.keys(NS_CARDS)) == [f"{b'g'.hex()}/a", f"{b'g'.hex()}/b"]
    del roster.cards["a"]
    roster.cards["c"] = {"n": 3}
    storage.save(b"g", roster)
    assert sorted(store.keys(NS_CARDS)) == [f"{b'g'.hex()}/b", f"{b'g'.hex()}/c"]
    fresh = GroupStorage(store)  # another process: what is stored is listed, not remembered
    roster.cards["d"] = {"n": 4}
    fresh.save(b"g", roster)
    loaded = GroupStorage(store).load(b"g", sig)
    assert loaded is not None and loaded[0].cards == {"b": {"n": 2}, "c": {"n": 3}, "d": {"n": 4}}


def test_a_leaf_lifetime_refusal_names_its_reason():
    from sealwire_mls.agents import CLOCK_SKEW_SECONDS, KEY_PACKAGE_LIFETIME, agent_key_package
    from sealwire_mls.keypackage import MAX_LIFETIME_SECONDS, check_leaf_contents

    now = 10**9
    leaf = agent_key_package(Identity.generate(), now=now).key_package.leaf_node
    assert leaf.lifetime.not_before == now - CLOCK_SKEW_SECONDS  # a peer's clock behind ours
    check_leaf_contents(leaf, now=now - CLOCK_SKEW_SECONDS // 2)
    with pytest.raises(MLSProtocolError, match="not valid yet"):
        check_leaf_contents(leaf, now=now - 2 * CLOCK_SKEW_SECONDS)
    with pytest.raises(MLSProtocolError, match="expired"):
        check_leaf_contents(leaf, now=now + KEY_PACKAGE_LIFETIME + 1)
    long = agent_key_package(Identity.generate(), now=now, lifetime=MAX_LIFETIME_SECONDS * 2)
    with pytest.raises(MLSProtocolError, match="days, longer than this group's cap"):
        check_leaf_contents(long.key_package.leaf_node, now=now)


class _Writes(MemoryStore):
    """A store that records the keys each transaction put or deleted."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[str, str, str]] = []

    @contextlib.contextmanager
    def transaction(self):  # type: ignore[no-untyped-def]
        with super().transaction() as tx:
            put, delete = tx.put, tx.delete

            def record_put(namespace: str, key: str, value: bytes) -> None:
                self.writes.append(("put", namespace, key))
                put(namespace, key, value)

            def record_delete(namespace: str, key: str) -> bool:
                self.writes.append(("delete", namespace, key))
                return delete(namespace, key)

            tx.put, tx.delete = record_put, record_delete  # type: ignore[method-assign]
            yield tx


def test_a_message_writes_its_senders_ratchets_alone_and_they_load_again(make_group):
    """Each leaf's ratchets are a record of their own: once many members have sent, a
    message still writes one record (not every sender's), a reload gets them all back
    (a replay is refused, the next message opens), and the next epoch deletes them."""
    groups, people = make_group([b"reader"] + [b"s%d" % i for i in range(6)])
    reader, senders = groups[0], groups[1:]
    store = _Writes()
    storage = GroupStorage(store)
    roster = Roster(reader, {})
    storage.save(b"g", roster)
    key = b"g".hex()
    for k, sender in enumerate(senders):  # each sender's first message derives its leaf
        assert reader.process(sender.encrypt(b"first %d" % k, os.urandom)).data == b"first %d" % k
        storage.save_ratchets(b"g", reader)
    leaf = senders[3].leaf_index
    store.writes.clear()
    replayed = senders[3].encrypt(b"again", os.urandom)
    assert reader.process(replayed).data == b"again"
    storage.save_ratchets(b"g", reader)
    assert store.writes == [("put", NS_RATCHETS, f"{key}/{leaf}")]

    loaded = GroupStorage(store).load(b"g", people[0].signature_priv)
    assert loaded is not None
    again = loaded[0].group
    with pytest.raises(MLSProtocolError):  # its key is gone from the stored ratchet too
        again.process(replayed)
    for k, sender in enumerate(senders):
        assert again.process(sender.encrypt(b"next %d" % k, os.urandom)).data == b"next %d" % k

    commit, _ = senders[0].commit(os.urandom)
    senders[0].merge_pending_commit()
    reader.process(commit)
    storage.save(b"g", Roster(reader, {}))
    assert store.keys(NS_RATCHETS) == [key]  # the past epoch's ratchets deleted


def test_ratchets_stored_in_the_group_blob_load_and_move_to_their_records(make_group):
    """A store written before leaves had records (the ratchets inside the RatchetsBlob)
    loads; the next message writes every ratchet as its leaf's record and the blob
    without them, so no older ratchet secret stays behind."""
    groups, people = make_group([b"reader", b"a", b"b"])
    reader = groups[0]
    for sender in groups[1:]:
        reader.process(sender.encrypt(b"hi", os.urandom))
    store = MemoryStore()
    epoch, ratchets = dump_group(reader)  # the older layout: every ratchet in the blob
    store.put(NS_EPOCH, b"g".hex(), epoch)
    store.put(NS_RATCHETS, b"g".hex(), ratchets)
    loaded = GroupStorage(store).load(b"g", people[0].signature_priv)
    assert loaded is not None
    group = loaded[0].group
    assert group.process(groups[1].encrypt(b"more", os.urandom)).data == b"more"
    GroupStorage(store).save_ratchets(b"g", group)
    leaves = {f"{b'g'.hex()}/{g.leaf_index}" for g in groups[1:]}
    assert set(store.keys(NS_RATCHETS)) == {b"g".hex()} | leaves
    nodes_alone = dump_secret_tree(group, whole=True).nodes  # the blob without ratchets
    assert store.get(NS_RATCHETS, b"g".hex()) == nodes_alone != ratchets
    again = GroupStorage(store).load(b"g", people[0].signature_priv)
    assert again is not None
    assert again[0].group.process(groups[2].encrypt(b"ok", os.urandom)).data == b"ok"
