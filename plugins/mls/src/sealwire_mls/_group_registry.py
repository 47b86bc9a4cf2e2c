"""This agent's MLS groups as held in memory: each group's roster (loaded from the
store once), its lock, the commit it has offered the relay, the log entries found
invalid in its epoch, and the relay ports its log is reached through."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from sealwire.errors import StateError
from sealwire.relay import RelayPort
from sealwire_mls._members import Roster
from sealwire_mls._storage import GroupStorage

__all__ = ["GroupRegistry"]

MAX_REJECTED = 256
"""Digests of log entries found invalid in the current epoch, remembered so that a
committer can tell the relay which commit it supersedes; a flood of garbage past
this only makes the committer wait for the log again."""


class GroupRegistry:
    """The groups of the agent of ``context`` (a binding context), kept in ``storage``.

    ``pending`` maps a group id to our commit offered to the relay and not yet
    known accepted.
    """

    def __init__(self, context: Any, storage: GroupStorage, signature_priv: Any) -> None:
        self._context = context
        self.storage = storage
        self._sig_priv = signature_priv
        self._rosters: dict[bytes, Roster] = {}
        self._locks: dict[bytes, asyncio.Lock] = {}
        self._advanced: dict[bytes, asyncio.Event] = {}
        self.pending: dict[bytes, bytes] = {}  # group id -> our commit offered to the relay
        self._rejected: dict[bytes, set[bytes]] = {}  # group id -> digests invalid this epoch

    # -- the relay ------------------------------------------------------------------------

    def home(self) -> RelayPort:
        """This agent's own relay port."""
        if self._context.relay is None:
            raise StateError("the MLS binding needs a relay: configure one")
        relay: RelayPort = self._context.relay
        return relay

    def port_of(self, roster: Roster) -> RelayPort:
        """This agent's port at the relay holding the log of ``roster``'s group."""
        home = self.home()
        return home if roster.relay is None else home.signed_in_at(roster.relay)

    def log_relay(self, group_id: bytes) -> RelayPort:
        """This agent's port at the relay holding the group's log."""
        return self.port_of(self.roster(group_id))

    async def fetch_card(self, roster: Roster, agent_id: str) -> None:
        """Fetch the card of member ``agent_id`` from the card directory of the group's
        relay and tie it to its leaf (a card that fails leaves the member unverified).

        A member is known here by its agent id alone (the leaf's credential),
        which names no home relay: every member publishes its card at the
        group's relay when it joins."""
        cards = await self.port_of(roster).fetch_cards([agent_id])
        roster.admit_fetched(cards, self._context.trust)

    # -- groups ---------------------------------------------------------------------------

    def lock(self, group_id: bytes) -> asyncio.Lock:
        """The group's lock: it orders commits, sealing and processing."""
        return self._locks.setdefault(group_id, asyncio.Lock())

    def roster(self, group_id: bytes) -> Roster:
        """The group's roster, loaded from the store the first time."""
        roster = self._rosters.get(group_id)
        if roster is None:
            loaded = self.storage.load(group_id, self._sig_priv)
            if loaded is None:
                raise StateError("not a member of this group")
            roster, pending = loaded
            self._rosters[group_id] = roster
            if pending is not None:
                self.pending[group_id] = pending
        return roster

    def hold(self, group_id: bytes, roster: Roster) -> None:
        """Keep ``roster`` (just stored) as the group's."""
        self._rosters[group_id] = roster

    def drop(self, group_id: bytes) -> None:
        """Forget what memory holds of the group: the next use starts again from the store."""
        self._rosters.pop(group_id, None)
        self.pending.pop(group_id, None)

    def epoch(self, group_id: bytes) -> int:
        """The group's current epoch."""
        return self.roster(group_id).group.epoch

    # -- epochs ---------------------------------------------------------------------------

    def waiter(self, group_id: bytes) -> asyncio.Event:
        """An event set when the group next advances or a log entry is rejected."""
        return self._advanced.setdefault(group_id, asyncio.Event())

    def signal_advance(self, group_id: bytes) -> None:
        event = self._advanced.pop(group_id, None)
        if event is not None:
            event.set()

    def reject(self, group_id: bytes, message: bytes) -> None:
        """Remember a log entry found invalid in this epoch, and wake a waiting committer."""
        rejected = self._rejected.setdefault(group_id, set())
        if len(rejected) >= MAX_REJECTED:
            rejected.clear()
        rejected.add(hashlib.sha256(message).digest())
        self.signal_advance(group_id)

    def rejected(self, group_id: bytes, digest: bytes) -> bool:
        """Whether the log entry of ``digest`` was found invalid in this epoch."""
        return digest in self._rejected.get(group_id, ())

    def new_epoch(self, group_id: bytes) -> None:
        """The group moved on: what was rejected was of the epoch before."""
        self._rejected.pop(group_id, None)
