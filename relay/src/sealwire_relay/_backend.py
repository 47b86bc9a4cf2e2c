"""The storage contract of the relay (:class:`RelayBackend`) and backend selection.

A backend stores ciphertext and public keys only. Its operations are atomic on
their own: a one-time prekey or KeyPackage is handed out once even under
concurrent fetches, an enqueue is idempotent by ``(mailbox, sender,
message_id)``, a group log accepts one commit per epoch, the next one only,
and a member list set for an epoch is stored only while that epoch is the one
the log accepts a commit for next.

Backends are contributed through the ``sealwire_relay_backends`` hook (see
:class:`sealwire.components.RelayBackendProvider`); this distribution brings
``sqlite`` and ``nats`` (:data:`BUILTIN_RELAY_BACKENDS`). The server is handed
its providers; it never loads plugins itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from sealwire.components import RelayBackendProvider
from sealwire.errors import ConfigurationError
from sealwire.relay.errors import LimitExceeded
from sealwire.relay.wire import Delivery, FetchedPrekeys, GroupLogEntry

__all__ = ["BUILTIN_RELAY_BACKENDS", "RelayBackend", "open_backend"]


@runtime_checkable
class RelayBackend(Protocol):
    """Where a relay keeps its directories, mailboxes and group logs."""

    async def start(self) -> None:
        """Open connections and create tables or streams (idempotent)."""

    async def close(self) -> None: ...

    async def publish_prekeys(
        self,
        agent_id: str,
        binding: str,
        bundle: bytes,
        one_time: Mapping[str, Mapping[str, bytes]],
        *,
        max_per_pool: int,
        max_pools: int,
    ) -> None:
        """Replace the bundle and add one-time keys (an existing key id is kept as is).

        Raises LimitExceeded("prekeys") and stores nothing when a pool would
        exceed ``max_per_pool`` or there would be more than ``max_pools`` pools.
        """

    async def fetch_prekeys(self, agent_id: str, binding: str) -> FetchedPrekeys | None:
        """The bundle and one key taken from each pool (None when no bundle)."""

    async def count_prekeys(self, agent_id: str, binding: str) -> dict[str, int]: ...

    async def publish_key_package(
        self, agent_id: str, key_package_id: str, key_package: bytes, *, max_count: int
    ) -> None:
        """Add a KeyPackage (an existing id is kept); LimitExceeded beyond ``max_count``."""

    async def fetch_key_package(self, agent_id: str) -> bytes | None:
        """Take the oldest KeyPackage of ``agent_id``: each is handed out once."""

    async def count_key_packages(self, agent_id: str) -> int: ...

    async def put_card(self, agent_id: str, card_json: bytes, *, max_count: int) -> None:
        """Store ``agent_id``'s card (canonical JSON), replacing its previous one.

        Raises LimitExceeded("cards") and stores nothing when a card for a new
        agent would make more than ``max_count`` cards.
        """

    async def get_cards(self, agent_ids: Sequence[str]) -> dict[str, bytes]:
        """The stored cards of those of ``agent_ids`` that have one."""

    async def enqueue(self, mailbox: str, delivery: Delivery, *, max_depth: int) -> bool:
        """Store ``delivery``; False when ``(sender, message_id)`` was already accepted.

        Raises LimitExceeded("mailbox_depth") when ``max_depth`` messages wait.
        """

    async def fetch(self, mailbox: str, limit: int) -> list[Delivery]:
        """The oldest unacknowledged messages, in order of acceptance."""

    async def ack(self, mailbox: str, keys: Sequence[tuple[str, str]]) -> int:
        """Acknowledge (remove) messages by ``(sender, message_id)``; the number removed.

        Unknown and already acknowledged keys are ignored: an agent can only ever
        remove what was delivered to its own mailbox, from the sender it names.
        """

    async def fetch_after(
        self, mailbox: str, after: tuple[str, str] | None, limit: int
    ) -> list[Delivery]:
        """The oldest unacknowledged messages accepted after ``after`` (its sender and id).

        From the oldest when ``after`` is None or names no message of the
        mailbox: a stream reads on from the last message it pushed instead of
        reading again everything it pushed and is still waiting for acks on.
        """

    async def commit_mailbox_batch(
        self,
        acks: Sequence[tuple[str, str, str]],
        enqueues: Sequence[tuple[str, Delivery]],
        *,
        max_depth: int,
    ) -> tuple[list[bool], list[bool | LimitExceeded]]:
        """Acknowledge ``(mailbox, sender, message_id)`` keys, then store ``(mailbox,
        delivery)`` pairs, committed together where the backend can (one transaction).

        The answers, in order: per ack, whether it removed a pending message; per
        enqueue, True (stored), False (a duplicate, as :meth:`enqueue`) or the
        LimitExceeded("mailbox_depth") that kept it out. Any other error fails the
        whole batch (and then none of it was stored, on a transactional backend).
        """

    async def group_members(self, group_id: bytes) -> frozenset[str] | None:
        """The member list, or None for a group never created."""

    async def set_group_members(
        self,
        group_id: bytes,
        members: frozenset[str],
        *,
        expected: frozenset[str] | None,
        epoch: int | None = None,
    ) -> bool:
        """Replace the member list if it still is ``expected``; False when it changed.

        With ``epoch``, first raise EpochConflictError (``expected_epoch`` set)
        unless ``epoch`` is the epoch the log accepts a commit for next (any
        epoch while the log holds no commit), atomically with the replacement:
        a commit accepted meanwhile makes the list stale.
        """

    async def append_group(self, group_id: bytes, entry: GroupLogEntry, *, max_entries: int) -> int:
        """Append to the log and return the entry's sequence number.

        A commit is accepted only for the epoch after the last commit's (any
        epoch for the first); otherwise EpochConflictError. ``entry.seq`` is
        ignored.
        """

    async def fetch_group_log(self, group_id: bytes, after: int, limit: int) -> list[GroupLogEntry]:
        """Entries with ``seq > after``, in order."""


def _open_sqlite(options: Mapping[str, Any]) -> RelayBackend:
    from sealwire_relay._sqlite_backend import SqliteBackend

    return SqliteBackend.from_options(options)


def _open_nats(options: Mapping[str, Any]) -> RelayBackend:
    from sealwire_relay._nats_backend import NatsBackend

    return NatsBackend.from_options(options)


BUILTIN_RELAY_BACKENDS: tuple[RelayBackendProvider, ...] = (
    RelayBackendProvider(name="sqlite", open=_open_sqlite),
    RelayBackendProvider(name="nats", open=_open_nats),
)


def open_backend(
    name: str,
    options: Mapping[str, Any],
    providers: Sequence[RelayBackendProvider] = BUILTIN_RELAY_BACKENDS,
) -> RelayBackend:
    """The backend called ``name`` among ``providers`` (the built-in ones by default;
    ``sealwire relay serve`` passes those of every installed plugin)."""
    by_name = {p.name: p for p in providers}
    provider = by_name.get(name)
    if provider is None:
        raise ConfigurationError(
            f"no relay backend {name!r} (available: {', '.join(sorted(by_name))})"
        )
    backend: object = provider.open(options)
    if not isinstance(backend, RelayBackend):
        raise ConfigurationError(f"relay backend {name!r} does not implement RelayBackend")
    return backend
