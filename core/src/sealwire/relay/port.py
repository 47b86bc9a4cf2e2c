"""What agents and bindings see of a relay: the :class:`RelayPort` protocol.

:class:`~sealwire.relay.RelayClient` implements it over the relay's HTTP and
WebSocket API; tests may pass an in-memory implementation. Nothing on the
agent's side imports the relay server (the ``sealwire-relay`` distribution).

Federation. An agent's card names its home relay: the mailbox address of its
``signal`` or ``mls`` offer (:func:`~sealwire.relay.parse_mailbox_address`).
A peer's prekey bundles, KeyPackages and card are published at the peer's
home relay, so they are looked up there: :func:`peer_directory` picks the
relay a card names and :meth:`RelayPort.at` gives its
:class:`RelayDirectory`. Mail to a peer homed elsewhere still goes through
the sender's own home relay, which forwards it over its federation link.

Why the agent asks the peer's relay itself, rather than having its home relay
ask over the federation link: a lookup is one request either way, the agent
already trusts nothing the relay says (the card is verified by the agent, the
prekeys and KeyPackages checked against the card), and the home relay would
have to be federated with every relay any peer is homed on, and hold that
relay's answers in its own request's time. Only mail needs the federation
link: it must be accepted while the peer's relay is down.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from sealwire.errors import DecodeError
from sealwire.identity import VerifiedCard
from sealwire.relay.wire import Delivery, FetchedPrekeys, GroupLogEntry, parse_mailbox_address

__all__ = ["RelayDirectory", "RelayPort", "peer_directory"]


@runtime_checkable
class RelayDirectory(Protocol):
    """The public directories of one relay: what an agent looks up about a peer homed there.

    Nothing in them is vouched for by the relay: callers verify cards
    (:func:`sealwire.identity.verify_card` and their trust store) and check the
    prekeys and KeyPackages they fetch against the peer's verified card.
    """

    @property
    def url(self) -> str:
        """The relay's base URL."""

    async def fetch_prekeys(self, agent_id: str, binding: str) -> FetchedPrekeys:
        """The agent's bundle and at most one one-time key per pool (each handed out once)."""

    async def fetch_key_package(self, agent_id: str) -> bytes:
        """Take one of the agent's KeyPackages (each is handed out once); NotFoundError if none."""

    async def fetch_cards(self, agent_ids: Sequence[str]) -> dict[str, Mapping[str, Any]]:
        """The published cards of ``agent_ids`` by agent id, NOT verified (callers verify)."""


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

    async def close(self) -> None:
        """Close this port and every directory :meth:`at` handed out."""

    def at(self, url: str) -> RelayDirectory:
        """The directories of the relay at base URL ``url`` (a peer's home relay).

        This port itself when ``url`` is its own relay; otherwise a client of
        that relay, kept per URL and closed with this port. DecodeError when
        ``url`` is not an ``http(s)://`` base URL.

        Lookups need no rights, and the relay is chosen by a peer's card: an
        implementation must not authenticate there with this agent's identity
        (:meth:`RelayClient.at <sealwire.relay.RelayClient.at>` says why).
        """

    def signed_in_at(self, url: str) -> RelayPort:
        """This agent at the relay at base URL ``url`` (a group's relay, named by an
        invitation): a port authenticated with this agent's own identity.

        This port itself when ``url`` is its own relay; otherwise a port kept
        per URL and closed with this one. Signing in where an invitation points
        lends the relay nothing: what the agent signs names the URL it dialled
        (:func:`sealwire.relay.wire.auth_payload`). DecodeError when ``url`` is
        not an ``http(s)://`` base URL.
        """

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

    def subscribe(self) -> AsyncGenerator[Delivery, None]:
        """Deliveries as they arrive; after a reconnect the unacknowledged come again
        (``aclose`` ends the subscription)."""

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

    def subscribe_group(
        self, group_id: bytes, after: int = 0
    ) -> AsyncGenerator[GroupLogEntry, None]:
        """The group's log entries after ``after``, then new ones as they are appended
        (``aclose`` ends the subscription and its connection)."""


def peer_directory(relay: RelayPort, peer: VerifiedCard, binding: str) -> RelayDirectory:
    """Where the keys and card the agent of ``peer`` publishes for ``binding`` are looked up.

    Its home relay: the one the mailbox address of its ``binding`` offer names
    (``relay.at`` that URL). ``relay`` itself when the card offers no such
    mailbox, names none (a bare agent id) or names one of another agent: a
    card that names no home relay is looked up where it always was.
    """
    offer = peer.offer(binding)
    if offer is None:
        return relay
    try:
        home, agent_id = parse_mailbox_address(offer.url)
    except DecodeError:
        return relay
    if home is None or agent_id != peer.agent_id:
        return relay
    return relay.at(home)
