"""The relay backend contract suite, public for backend authors (``sealwire-relay[testing]``).

Every storage engine of the relay (SQLite, NATS JetStream, a plugin's) runs the
same tests::

    class TestMyBackendContract(RelayBackendContract):
        def open_backend(self, location: str) -> RelayBackend:
            return MyBackend(location)

``open_backend(location)`` opens a backend for ``location`` (a fresh one per
test; the same location must give the same data after a close). What the
suite holds a backend to: mailboxes keep order, refuse a duplicate and stop at
their depth; an ack removes only the named sender's message of that mailbox; a
batch answers per item; one-time prekeys and KeyPackages are handed out once,
and a limit stores nothing; a group's log applies the epoch rules of
:func:`sealwire_relay.next_access` atomically; everything survives a reopen.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import ClassVar

import pytest
import pytest_asyncio

from sealwire.relay import Delivery, EpochConflictError, ForbiddenError, LimitExceeded
from sealwire.relay.wire import GroupLogEntry
from sealwire_relay import GroupAppend, RelayBackend

__all__ = ["RelayBackendContract"]

Open = Callable[[str], Awaitable[RelayBackend]]
_locations = itertools.count()


def _delivery(sender: str, message_id: str, data: bytes = b"x") -> Delivery:
    return Delivery(message_id=message_id, sender=sender, envelope=data, received_at=1.0)


def _entry(kind: str, epoch: int, sender: str, message: bytes = b"m") -> GroupLogEntry:
    return GroupLogEntry(
        seq=0, kind=kind, epoch=epoch, sender=sender, message=message, received_at=1.0
    )


class RelayBackendContract:
    """Subclass and define :meth:`open_backend`."""

    pytestmark = pytest.mark.asyncio
    max_members: ClassVar[int] = 100

    def open_backend(self, location: str) -> RelayBackend:
        raise NotImplementedError

    @pytest_asyncio.fixture
    async def backends(self) -> AsyncIterator[Open]:
        """``await backends(location)``: a started backend, closed after the test."""
        opened: list[RelayBackend] = []

        async def open_one(location: str) -> RelayBackend:
            backend = self.open_backend(location)
            await backend.start()
            opened.append(backend)
            return backend

        yield open_one
        for backend in opened:
            await backend.close()

    @pytest_asyncio.fixture
    async def backend(self, backends: Open) -> RelayBackend:
        return await backends(f"contract{next(_locations)}")

    # -- mailboxes ------------------------------------------------------------------

    async def test_a_mailbox_keeps_order_and_refuses_duplicates(
        self, backend: RelayBackend
    ) -> None:
        for n in range(3):
            assert await backend.enqueue("bob", _delivery("alice", f"m{n}"), max_depth=10)
        assert not await backend.enqueue("bob", _delivery("alice", "m1", b"again"), max_depth=10)
        got = await backend.fetch("bob", 10)
        assert [(d.message_id, d.envelope) for d in got] == [
            ("m0", b"x"),
            ("m1", b"x"),
            ("m2", b"x"),
        ]
        assert await backend.fetch("carol", 10) == []

    async def test_an_ack_removes_only_that_senders_message(self, backend: RelayBackend) -> None:
        await backend.enqueue("bob", _delivery("alice", "m"), max_depth=10)
        await backend.enqueue("bob", _delivery("carol", "m"), max_depth=10)
        assert await backend.ack("bob", [("mallory", "m"), ("alice", "nope")]) == 0
        assert await backend.ack("dave", [("alice", "m")]) == 0  # another mailbox
        assert await backend.ack("bob", [("alice", "m"), ("alice", "m")]) == 1
        assert [d.sender for d in await backend.fetch("bob", 10)] == ["carol"]

    async def test_a_mailbox_stops_at_its_depth(self, backend: RelayBackend) -> None:
        for n in range(2):
            await backend.enqueue("bob", _delivery("alice", f"m{n}"), max_depth=2)
        with pytest.raises(LimitExceeded):
            await backend.enqueue("bob", _delivery("alice", "m2"), max_depth=2)
        await backend.ack("bob", [("alice", "m0")])
        assert await backend.enqueue("bob", _delivery("alice", "m2"), max_depth=2)

    async def test_fetch_after_reads_on_from_a_message(self, backend: RelayBackend) -> None:
        for n in range(4):
            await backend.enqueue("bob", _delivery("alice", f"m{n}"), max_depth=10)
        after = await backend.fetch_after("bob", ("alice", "m1"), 10)
        assert [d.message_id for d in after] == ["m2", "m3"]
        every = await backend.fetch_after("bob", ("alice", "gone"), 10)
        assert [d.message_id for d in every] == ["m0", "m1", "m2", "m3"]
        assert [d.message_id for d in await backend.fetch_after("bob", None, 2)] == ["m0", "m1"]

    async def test_a_batch_answers_each_item(self, backend: RelayBackend) -> None:
        await backend.enqueue("bob", _delivery("alice", "old"), max_depth=2)
        acked, stored = await backend.commit_mailbox_batch(
            [("bob", "alice", "old"), ("bob", "alice", "never")],
            [("bob", _delivery("alice", "a")), ("bob", _delivery("alice", "a")),
             ("bob", _delivery("alice", "b")), ("bob", _delivery("alice", "c"))],
            max_depth=2,
        )  # fmt: skip
        assert acked == [True, False]
        assert stored[:3] == [True, False, True]
        assert isinstance(stored[3], LimitExceeded)
        assert [d.message_id for d in await backend.fetch("bob", 10)] == ["a", "b"]

    # -- directories ----------------------------------------------------------------

    async def test_one_time_prekeys_are_handed_out_once(self, backend: RelayBackend) -> None:
        pools = {"x25519": {"1": b"k1", "2": b"k2"}}
        await backend.publish_prekeys("bob", "signal", b"bundle", pools, max_per_pool=4,
                                      max_pools=2)  # fmt: skip
        assert await backend.count_prekeys("bob", "signal") == {"x25519": 2}
        taken = set()
        for _ in range(3):
            fetched = await backend.fetch_prekeys("bob", "signal")
            assert fetched is not None and fetched.bundle == b"bundle"
            taken.add(fetched.one_time.get("x25519"))
        assert taken == {("1", b"k1"), ("2", b"k2"), None}
        assert await backend.fetch_prekeys("carol", "signal") is None

    async def test_a_prekey_limit_stores_nothing(self, backend: RelayBackend) -> None:
        many = {"x25519": {str(n): b"k" for n in range(5)}}
        with pytest.raises(LimitExceeded):
            await backend.publish_prekeys("bob", "signal", b"bundle", many, max_per_pool=4,
                                          max_pools=2)  # fmt: skip
        assert await backend.fetch_prekeys("bob", "signal") is None

    async def test_key_packages_go_once_oldest_first(self, backend: RelayBackend) -> None:
        for n in range(2):
            await backend.publish_key_package("bob", f"kp{n}", f"package {n}".encode(), max_count=2)
        with pytest.raises(LimitExceeded):
            await backend.publish_key_package("bob", "kp2", b"package 2", max_count=2)
        assert await backend.count_key_packages("bob") == 2
        assert await backend.fetch_key_package("bob") == b"package 0"
        assert await backend.fetch_key_package("bob") == b"package 1"
        assert await backend.fetch_key_package("bob") is None

    async def test_cards_are_replaced_and_bounded(self, backend: RelayBackend) -> None:
        await backend.put_card("alice", b'{"v":1}', max_count=2)
        await backend.put_card("alice", b'{"v":2}', max_count=2)
        await backend.put_card("bob", b'{"v":1}', max_count=2)
        with pytest.raises(LimitExceeded):
            await backend.put_card("carol", b'{"v":1}', max_count=2)
        assert await backend.get_cards(["alice", "bob", "carol"]) == {
            "alice": b'{"v":2}', "bob": b'{"v":1}'
        }  # fmt: skip

    # -- group logs -----------------------------------------------------------------

    async def test_a_group_log_applies_the_epoch_rules(self, backend: RelayBackend) -> None:
        group = b"g1"
        members = frozenset({"alice", "bob"})
        assert (await backend.create_group(group, members)).members == members
        assert (await backend.create_group(group, frozenset({"x"}))).members == members

        async def append(entry: GroupLogEntry, request: GroupAppend | None = None) -> int:
            return await backend.append_group(
                group, entry, request or GroupAppend(), max_entries=100,
                max_members=self.max_members,
            )  # fmt: skip

        first = await append(_entry("commit", 1, "alice"))
        with pytest.raises(EpochConflictError):
            await append(_entry("commit", 1, "bob"))  # epoch 1 is taken
        with pytest.raises(ForbiddenError):
            await append(_entry("application", 1, "mallory"))
        message = await append(_entry("application", 1, "bob", b"hello"))
        log = await backend.fetch_group_log(group, 0, 10)
        assert [(e.seq, e.kind, e.sender) for e in log] == [
            (first, "commit", "alice"), (message, "application", "bob")
        ]  # fmt: skip
        assert [e.message for e in await backend.fetch_group_log(group, first, 10)] == [b"hello"]
        smaller = GroupAppend(members=frozenset({"alice"}))
        await append(_entry("commit", 2, "alice"), smaller)
        access = await backend.group_access(group)
        assert access is not None and access.members == frozenset({"alice"})
        assert await backend.group_access(b"never") is None

    # -- durability -----------------------------------------------------------------

    async def test_everything_survives_a_reopen(self, backends: Open) -> None:
        location = f"contract{next(_locations)}"
        first = self.open_backend(location)
        await first.start()
        await first.enqueue("bob", _delivery("alice", "m"), max_depth=10)
        await first.publish_key_package("bob", "kp", b"package", max_count=2)
        await first.create_group(b"g", frozenset({"alice"}))
        await first.close()
        again = await backends(location)
        assert [d.message_id for d in await again.fetch("bob", 10)] == ["m"]
        assert await again.fetch_key_package("bob") == b"package"
        assert await again.group_access(b"g") is not None
