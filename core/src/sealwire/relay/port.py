"""What agents and bindings see of a relay: the :class:`RelayPort` protocol.

:class:`~sealwire.relay.RelayClient` implements it over the relay's HTTP and
WebSocket API; tests may pass an in-memory implementation. Nothing on the
agent's side imports the relay server (the ``sealwire-relay`` distribution).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from sealwire.relay.wire import Delivery, FetchedPrekeys, GroupLogEntry

__all__ = ["RelayPort"]


@runtime_checkable
class RelayPort(Protocol):
    """An agent's home relay: directories, its mailbox, and the logs of its groups.

    Every method raises a :class:`~sealwire.relay.RelayError` subclass for a
    refusal (:class:`~sealwire.relay.NotFoundError`,
    :class:`~sealwire.relay.ForbiddenError`, :class:`~sealwire.relay.LimitExceeded`
    with ``retry_after`` for a rate limit, :class:`~sealwire.relay.EpochConflictError`)
    and :class:`~sealwire.relay.RelayUnavailable` when the relay cannot be reached.
    """

    @property
    def url(self) -> str:
        """The relay's base URL."""

    @property
    def agent_id(self) -> str:
        """The agent this port acts for."""

    @property
    def mailbox_address(self) -> str:
        """This agent's mailbox address on this relay (what its card names)."""

    async def close(self) -> None: ...

    # -- prekey directory -----------------------------------------------------------

    async def publish_prekeys(
        self, binding: str, bundle: bytes, one_time: Mapping[str, Mapping[str, bytes]]
    ) -> None:
        """Replace this agent's bundle for ``binding`` and add one-time keys to its pools."""

    async def fetch_prekeys(self, agent_id: str, binding: str) -> FetchedPrekeys:
        """The peer's bundle and at most one one-time key per pool (each handed out once)."""

    async def count_prekeys(self, binding: str) -> Mapping[str, int]:
        """How many one-time keys remain in each of this agent's pools for ``binding``."""

    # -- KeyPackage directory -----------------------------------------------------------

    async def publish_key_package(self, key_package_id: str, key_package: bytes) -> None:
        """Add one of this agent's KeyPackages (an existing id is kept)."""

    async def count_key_packages(self) -> int:
        """How many of this agent's KeyPackages remain unused."""

    async def fetch_key_package(self, agent_id: str) -> bytes:
        """Take one of the agent's KeyPackages (each is handed out once); NotFoundError if none."""

    # -- card directory -------------------------------------------------------------------

    async def publish_card(self, card: Mapping[str, Any]) -> None:
        """Publish this agent's signed card, replacing its previous one."""

    async def fetch_cards(self, agent_ids: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        """The published cards of ``agent_ids`` by agent id, NOT verified (callers verify)."""

    # -- mailboxes --------------------------------------------------------------------------

    async def send(self, recipient: str, message_id: str, envelope: bytes) -> None:
        """Enqueue ``envelope`` for ``recipient`` (mailbox address or agent id).

        Idempotent by (sender, ``message_id``): a send may be retried after any failure.
        """

    async def fetch(self, *, limit: int = 100) -> list[Delivery]:
        """The oldest unacknowledged messages of this agent's mailbox (again until acked)."""

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Remove delivered messages from the mailbox (by sender and message id)."""

    def subscribe(self) -> AsyncIterator[Delivery]:
        """Deliveries as they arrive; after a reconnect the unacknowledged come again."""

    # -- groups -------------------------------------------------------------------------------

    async def set_group_members(self, group_id: bytes, members: Sequence[str]) -> None:
        """Create the group's log with its first member list (this agent among them).

        After creation the list changes only with a commit (``append_commit``'s
        ``members``): a repeat of the creation with the same list is accepted
        (a retry), any other list is ForbiddenError.
        """

    async def group_members(self, group_id: bytes) -> list[str]:
        """The relay's member list of the group (members only)."""

    async def append_commit(
        self,
        group_id: bytes,
        epoch: int,
        message: bytes,
        *,
        members: Sequence[str] | None = None,
        supersedes: int | None = None,
    ) -> int:
        """Append a commit made in ``epoch``; EpochConflictError if that epoch is taken.

        ``members`` (the group's members once the commit applies) replaces the
        relay's list atomically with the append. ``supersedes`` names the log
        position of the latest commit, for ``epoch``, that this member found
        invalid: the relay then takes this one for the same epoch.
        """

    async def post_group_message(
        self, group_id: bytes, epoch: int, message: bytes, *, admit: Sequence[str] = ()
    ) -> int:
        """Append an application message sent in ``epoch``; its log sequence number.

        ``admit`` names agents allowed to read the log and append one commit
        (an external join) until the next commit.
        """

    async def fetch_group_log(
        self, group_id: bytes, after: int = 0, limit: int = 100
    ) -> list[GroupLogEntry]:
        """Log entries with a sequence number above ``after``, in order."""

    def subscribe_group(self, group_id: bytes, after: int = 0) -> AsyncIterator[GroupLogEntry]:
        """The group's log entries after ``after``, then new ones as they are appended."""
