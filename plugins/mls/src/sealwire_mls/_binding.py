"""The MLS group binding: RFC 9420 groups of agents over the relay's group log.

Rules of this module:

* The binding is the only writer of a group's log: its commits and, through
  :meth:`post`, the application messages the agent sends, each sealed and
  appended under the group's lock.
* The first VALID commit for an epoch in log order wins; an invalid one
  (garbage, a replayed old commit, one signed by a removed member) and any
  later one for the same epoch are skipped by every member alike, and the
  relay, which cannot tell them apart, keeps the epoch open: a commit is
  staged, stored as *pending*, offered to the relay, and merged only once
  accepted. On a conflict it is dropped; if the log's latest commit is for
  our own epoch, the binding waits until the group router has fed it to
  :meth:`process`: valid, the group moved on and the same changes are offered
  again on the new epoch, minus what the winner did; invalid, they are
  offered again for the same epoch naming the invalid commit
  (``supersedes``), which the relay takes.
* The relay's member list of the group changes only with our commits: each
  carries the members as they will be once it applies (``members``).
* Every state change is committed to the store before its result is handed
  on: the epoch blob when the epoch changes, the ratchets blob with every
  message (:mod:`sealwire_mls.persistence`).
* Per group, one asyncio lock orders commits, sealing and processing.
* Welcome messages travel through the joiner's relay mailbox as an
  :class:`~sealwire_mls._members.Invite`; KeyPackages go to the relay's
  directory, one use each, and are replenished after every join.
* Members' cards: a commit adding agents carries theirs; a joiner fetches the
  others from the relay's card directory (each agent publishes its own card
  with its KeyPackages), and a message from a member whose card is still
  unknown fetches that one first.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import version
from typing import Any

from sealwire.binding import (
    BindingInfo,
    GroupBinding,
    GroupEvent,
    GroupMembershipChanged,
    GroupMessage,
    OpenedMessage,
    Party,
    PeerIdentity,
    Property,
    SessionTerms,
    Shape,
)
from sealwire.errors import ConfigurationError, SealwireError, StateError, TrustError
from sealwire.identity import VerifiedCard, verify_card
from sealwire.relay import (
    MAX_CARDS_PER_FETCH,
    EpochConflictError,
    LimitExceeded,
    RelayPort,
    RelayUnavailable,
    peer_directory,
    wrap,
)
from sealwire.store import StoreTransaction
from sealwire_mls._external_join import (
    ADMIT_AAD,
    admission_note,
    external_commit,
    note_admission,
)
from sealwire_mls._members import (
    MAX_LIFETIME_CAP_DAYS,
    Invite,
    Roster,
    decode_cards,
    encode_cards,
)
from sealwire_mls._storage import GroupStorage, Keep
from sealwire_mls.agents import (
    agent_key_package,
    agent_signature_key,
    agent_suite,
    agent_suites,
    check_member,
)
from sealwire_mls.codec import decode_exact
from sealwire_mls.crypto import PQ_AUTH_CIPHER_SUITES, PQ_CIPHER_SUITES, cipher_suite
from sealwire_mls.errors import MLSAuthenticationError, MLSDecodeError, MLSProtocolError
from sealwire_mls.framing import ContentType, PrivateMessage, PublicMessage, SenderType
from sealwire_mls.group import ApplicationMessage, CommitApplied, Group
from sealwire_mls.keypackage import MAX_LIFETIME_SECONDS, KeyPackage, LeafNode
from sealwire_mls.proposals import Add, Commit
from sealwire_mls.welcome import MLSMessage, Welcome

__all__ = ["MlsBinding"]

ProcessKeep = Callable[[StoreTransaction, GroupEvent | None], None]

log = logging.getLogger(__name__)

SUITE = 1
"""MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519: its signature key is the agent's own.
The default; the binding option ``cipher_suite`` picks another suite whose signature
key is one of the agent's (a post-quantum one: see :func:`sealwire_mls.agents.agent_suite`)."""
KEY_PACKAGE_TARGET = 8
"""KeyPackages kept in the relay's directory: enough for several invitations while
the agent is offline, few enough that unused private keys stay a small set."""
COMMIT_ATTEMPTS = 8
"""Commits offered before giving up when other members keep winning the epoch."""
EPOCH_WAIT_SECONDS = 15.0
"""How long a losing committer waits for the winning commit to be processed."""
CARD_RETRY_SECONDS = 60.0
"""A member whose card was not found (or did not verify) is looked up again after
this long: its messages meanwhile are refused without a relay request each."""
MAX_CARD_MISSES = 4096
"""Members remembered as lacking a card (forgetting one only costs a lookup)."""
MAX_GROUP_ID_BYTES = 64
"""Group ids are store keys (hex) and relay names: 64 bytes is ample for random ids."""
INVITE_SEND_ATTEMPTS = 5
INVITE_RETRY_FIRST_SECONDS = 0.2
"""Tries (doubling from this delay, about 6 s in all) to put an invitation in a
joiner's mailbox: the commit adding it is already in, so a passing failure must not
leave it out."""
LIFETIME_OPTION = "key_package_max_lifetime_days"
"""The cap on a KeyPackage's total lifetime (RFC 9420 §7.2), in days, or ``"unbounded"``,
of the groups this agent creates: part of the group's policy, carried to every joiner
(plugins/mls/README.md)."""


def lifetime_cap(options: Mapping[str, Any]) -> int | None:
    """The KeyPackage lifetime cap in seconds (None: unbounded) of the binding options."""
    value = options.get(LIFETIME_OPTION, MAX_LIFETIME_SECONDS // 86400)
    if value == "unbounded":
        return None
    if type(value) is not int or not 1 <= value <= MAX_LIFETIME_CAP_DAYS:
        raise ConfigurationError(
            f"[bindings.mls] {LIFETIME_OPTION} is a number of days from 1 to "
            f'{MAX_LIFETIME_CAP_DAYS}, or "unbounded"'
        )
    return value * 86400


MAX_REJECTED = 256
"""Digests of log entries found invalid in the current epoch, remembered so that a
committer can tell the relay which commit it supersedes; a flood of garbage past
this only makes the committer wait for the log again."""


class MlsBinding(GroupBinding):
    """Groups of agents in one encrypted channel (RFC 9420), ordered by the relay."""

    info = BindingInfo(
        name="mls",
        version=version("sealwire-mls"),
        major=1,
        shape=Shape.GROUP,
        properties=frozenset(
            {
                Property.MUTUAL_AUTH,
                Property.FORWARD_SECRECY,
                Property.POST_COMPROMISE_SECURITY,
                Property.GROUP,
                Property.ASYNC,
            }
        ),
        description="RFC 9420 MLS groups over the relay's ordered group log",
    )
    option_names = frozenset({"cipher_suite", LIFETIME_OPTION, "external_joins"})

    @classmethod
    def check_options(cls, options: Mapping[str, object]) -> None:
        """Known keys; a suite an agent can use, a lifetime cap, a flag."""
        super().check_options(options)
        agent_suite(options)  # each names the option and the values allowed
        lifetime_cap(options)
        joins = options.get("external_joins", False)
        if not isinstance(joins, bool):
            raise ConfigurationError(
                f"bindings.{cls.info.name}.external_joins must be true or false, not {joins!r}"
            )

    @classmethod
    def session_terms(cls, local: Party, peer: Party | None) -> SessionTerms:
        """A group in this agent's cipher suite (its KeyPackages and the groups it creates
        are; a member on another suite is refused, never added on a weaker one):
        ``post_quantum`` when the suite's KEM is ML-KEM or X-Wing, ``post_quantum_auth``
        when its signatures are ML-DSA."""
        try:
            suite = agent_suite({"cipher_suite": SUITE, **local.options})
        except ConfigurationError:  # reported when the binding starts
            return SessionTerms(properties=cls.info.properties)
        properties = set(cls.info.properties)
        if suite in PQ_CIPHER_SUITES.values():
            properties.add(Property.POST_QUANTUM)
        if suite in PQ_AUTH_CIPHER_SUITES:
            properties.add(Property.POST_QUANTUM_AUTH)
        return SessionTerms(
            properties=frozenset(properties), protocol="MLS 1.0", suite=cipher_suite(suite).name
        )

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        suite = agent_suite({"cipher_suite": SUITE, **context.options})
        if suite not in agent_suites(context.identity):  # fails here, not in a group
            raise ConfigurationError(
                f"[bindings.mls] cipher_suite {suite:#06x} signs with ML-DSA-65: this agent"
                " has no ML-DSA-65 key (make its identity with sealwire init --post-quantum)"
            )
        # This agent's KeyPackages are all of its suite, so every group it is in is too:
        # one signature key serves them all.
        self._sig_priv = agent_signature_key(context.identity, suite)
        self._max_lifetime = lifetime_cap(context.options)
        self._storage = GroupStorage(context.store)
        self._rosters: dict[bytes, Roster] = {}
        self._locks: dict[bytes, asyncio.Lock] = {}
        self._advanced: dict[bytes, asyncio.Event] = {}
        self._pending: dict[bytes, bytes] = {}  # group id -> our commit offered to the relay
        self._rejected: dict[bytes, set[bytes]] = {}  # group id -> digests invalid this epoch
        self._published_card: object = None  # the card last published to the relay
        self._card_misses: dict[str, float] = {}  # agent id -> loop time to ask again

    # -- helpers ---------------------------------------------------------------------------

    @property
    def _me(self) -> str:
        return str(self.context.identity.agent_id)

    def _now(self) -> int:
        return int(self.context.clock())

    @property
    def _suite(self) -> int:
        """The option ``cipher_suite``: of this agent's KeyPackages and of the groups it creates."""
        return agent_suite({"cipher_suite": SUITE, **self.context.options})

    def _relay(self) -> RelayPort:
        if self.context.relay is None:
            raise StateError("the MLS binding needs a relay: configure one")
        return self.context.relay

    def _log_relay(self, group_id: bytes) -> RelayPort:
        """This agent's port at the relay holding the group's log."""
        return self._port_of(self._roster(group_id))

    def _port_of(self, roster: Roster) -> RelayPort:
        home = self._relay()
        return home if roster.relay is None else home.signed_in_at(roster.relay)

    def group_relay(self, group_id: bytes) -> RelayPort | None:
        url = self._roster(group_id).relay
        return None if url is None else self._relay().signed_in_at(url)

    def _lock(self, group_id: bytes) -> asyncio.Lock:
        return self._locks.setdefault(group_id, asyncio.Lock())

    def _roster(self, group_id: bytes) -> Roster:
        roster = self._rosters.get(group_id)
        if roster is None:
            loaded = self._storage.load(group_id, self._sig_priv)
            if loaded is None:
                raise StateError("not a member of this group")
            roster, pending = loaded
            self._rosters[group_id] = roster
            if pending is not None:
                self._pending[group_id] = pending
        return roster

    def _signal_advance(self, group_id: bytes) -> None:
        event = self._advanced.pop(group_id, None)
        if event is not None:
            event.set()

    def groups(self) -> list[bytes]:
        """Every group this agent holds state for."""
        return self._storage.groups()

    def members(self, group_id: bytes) -> tuple[str, ...]:
        return self._roster(group_id).agent_ids()

    def epoch(self, group_id: bytes) -> int:
        """The group's current epoch."""
        return self._roster(group_id).group.epoch

    def epoch_authenticator(self, group_id: bytes) -> bytes:
        """The epoch authenticator (§8.7), to compare with other members out of band."""
        return self._roster(group_id).group.epoch_authenticator()

    def export_secret(self, group_id: bytes, label: str, context: bytes, length: int) -> bytes:
        group = self._roster(group_id).group
        return group.export_secret(label.encode("utf-8"), context, length)

    # -- KeyPackages (§10) -----------------------------------------------------------------

    async def publish_key_packages(self) -> None:
        """Top the relay's directory up to :data:`KEY_PACKAGE_TARGET` KeyPackages (and
        publish this agent's card there, for the members of its groups to fetch)."""
        relay = self._relay()
        if self._published_card is not self.context.card:
            await relay.publish_card(self.context.card.card)
            self._published_card = self.context.card
        missing = KEY_PACKAGE_TARGET - await relay.count_key_packages()
        for _ in range(max(0, missing)):
            fresh = agent_key_package(self.context.identity, now=self._now(), suite_id=self._suite)
            ref = self._storage.keep_key_package(fresh)
            await relay.publish_key_package(ref, fresh.key_package.to_bytes())

    async def _fetch_key_package(self, card: VerifiedCard) -> KeyPackage:
        """One of the agent's KeyPackages, from its home relay (the one the mailbox
        address of its card's ``mls`` offer names), checked against its card."""
        directory = peer_directory(self._relay(), card, self.info.name)
        data = await directory.fetch_key_package(card.identity.agent_id)
        key_package = decode_exact(data, KeyPackage.decode, "KeyPackage")
        if key_package.cipher_suite != self._suite:
            raise MLSProtocolError("the agent's KeyPackage is of another cipher suite")
        check_member(key_package.leaf_node, card)  # again in the commit, by every member
        return key_package

    # -- creating and changing groups ----------------------------------------------------------

    async def create_group(self, group_id: bytes) -> None:
        if not 0 < len(group_id) <= MAX_GROUP_ID_BYTES:
            raise StateError(f"a group id has 1 to {MAX_GROUP_ID_BYTES} bytes")
        if self._storage.exists(group_id):
            raise StateError("this agent already has a group with that id")
        own = agent_key_package(self.context.identity, now=self._now(), suite_id=self._suite)
        group = Group.create(
            self._suite, group_id, own.key_package.leaf_node, encryption_priv=own.encryption_priv,
            signature_priv=self._sig_priv, random=os.urandom,
        )  # fmt: skip
        await self._relay().set_group_members(group_id, [self._me])
        policy = bool(self.context.options.get("external_joins", False))
        roster = Roster(group, {self._me: self.context.card.card}, external_joins=policy,
                        max_lifetime=self._max_lifetime)  # fmt: skip
        self._storage.save(group_id, roster)
        self._rosters[group_id] = roster

    async def add_members(self, group_id: bytes, members: Sequence[VerifiedCard]) -> None:
        roster = self._roster(group_id)
        adds: dict[str, tuple[VerifiedCard, KeyPackage]] = {}
        for card in members:
            agent_id = card.identity.agent_id
            if agent_id == self._me or roster.leaf_of(agent_id) is not None or agent_id in adds:
                continue
            adds[agent_id] = (card, await self._fetch_key_package(card))
        await self._commit(group_id, adds=adds)

    async def remove_members(self, group_id: bytes, agent_ids: Sequence[str]) -> None:
        if self._me in agent_ids:
            raise StateError("a member cannot remove itself (§12.2): ask another member")
        await self._commit(group_id, removes=frozenset(agent_ids))

    async def update(self, group_id: bytes) -> None:
        await self._commit(group_id, update=True)

    async def _commit(
        self,
        group_id: bytes,
        *,
        adds: Mapping[str, tuple[VerifiedCard, KeyPackage]] | None = None,
        removes: frozenset[str] = frozenset(),
        update: bool = False,
    ) -> None:
        """Offer the changes until a commit of ours is accepted (see the module rules)."""
        adds = dict(adds or {})
        supersedes: int | None = None
        for _ in range(COMMIT_ATTEMPTS):
            async with self._lock(group_id):
                roster = self._roster(group_id)
                epoch = roster.group.epoch
                todo = {a: v for a, v in adds.items() if roster.leaf_of(a) is None}
                leaves = [roster.leaf_of(a) for a in sorted(removes)]
                gone = [i for i in leaves if i is not None]
                if not todo and not gone and not update:
                    return  # another member's commit did it all
                conflict = await self._offer(group_id, roster, todo, gone, supersedes)
                if conflict is None:
                    return
            supersedes = None
            if conflict.expected_epoch == epoch + 1 and conflict.commit_seq is not None:
                supersedes = await self._judge(group_id, epoch, conflict.commit_seq)
            else:
                await self._until_past(group_id, epoch)
        raise StateError(f"no commit of ours was accepted in {COMMIT_ATTEMPTS} attempts")

    async def _until_past(self, group_id: bytes, epoch: int) -> None:
        """Wait until the group router has processed the log past ``epoch``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + EPOCH_WAIT_SECONDS
        while True:
            waiter = self._advanced.setdefault(group_id, asyncio.Event())
            if self.epoch(group_id) != epoch:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise StateError("another commit won the epoch and never reached us")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), remaining)

    async def _judge(self, group_id: bytes, epoch: int, commit_seq: int) -> int | None:
        """The log's latest commit (at ``commit_seq``) is for our ``epoch``: wait until the
        router has processed it. None if it was valid (we moved on), ``commit_seq`` if
        it was found invalid (our next offer supersedes it)."""
        entries = await self._log_relay(group_id).fetch_group_log(group_id, commit_seq - 1, 1)
        if not entries or entries[0].seq != commit_seq:
            return None  # not readable as named: offer again on whatever epoch we reach
        if not _commit_for(entries[0].message, epoch):
            return commit_seq  # not even a commit of our epoch: no member can take it
        digest = hashlib.sha256(entries[0].message).digest()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + EPOCH_WAIT_SECONDS
        while True:
            waiter = self._advanced.setdefault(group_id, asyncio.Event())
            if self.epoch(group_id) != epoch:
                return None
            if digest in self._rejected.get(group_id, ()):
                return commit_seq
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise StateError("the epoch's commit was never processed here")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), remaining)

    async def _offer(
        self,
        group_id: bytes,
        roster: Roster,
        adds: Mapping[str, tuple[VerifiedCard, KeyPackage]],
        removes: list[int],
        supersedes: int | None,
    ) -> EpochConflictError | None:
        """Stage, store and offer one commit; None once the relay accepted it, else the
        relay's conflict (the staged commit dropped)."""
        group, epoch = roster.group, roster.group.epoch
        cards = [card.card for card, _ in adds.values()]
        message, welcome = group.commit(
            os.urandom, add=[kp for _, kp in adds.values()], remove=removes,
            authenticated_data=encode_cards(cards) if cards else b"", now=self._now(),
            max_lifetime=roster.max_lifetime,
        )  # fmt: skip
        leaves = roster.leaves()
        departing = {leaves[i] for i in removes if i in leaves}
        members = sorted((set(roster.agent_ids()) - departing) | set(adds))
        self._storage.save_pending(group_id, group, message)
        self._pending[group_id] = message
        try:
            seq = await self._log_relay(group_id).append_commit(
                group_id, epoch, message, members=members, supersedes=supersedes
            )
        except EpochConflictError as conflict:
            group.discard_pending_commit()
            self._pending.pop(group_id, None)
            self._storage.drop_pending(group_id)
            return conflict
        group.merge_pending_commit()
        self._pending.pop(group_id, None)
        for card, kp in adds.values():
            roster.admit(kp.leaf_node, card.card, self.context.trust)
        roster.forget_departed()
        self._storage.save(group_id, roster)
        self._rejected.pop(group_id, None)
        self._signal_advance(group_id)
        if welcome is not None:
            await self._invite(group_id, roster, seq, welcome, [c for c, _ in adds.values()])
        return None

    async def _invite(
        self, group_id: bytes, roster: Roster, seq: int, welcome: bytes, cards: list[VerifiedCard]
    ) -> None:
        invite = Invite(
            group_id=group_id, seq=seq, relay=roster.relay or self._relay().url,
            welcome=welcome, external_joins=roster.external_joins,
            max_lifetime=roster.max_lifetime,
        )  # fmt: skip
        lost = []
        for card in cards:  # the commit is in: every joiner is invited, whatever fails
            try:
                await self._send_invite(card, invite)
            except SealwireError as exc:
                log.warning("invitation to %s undelivered: %s", card.identity.agent_id, exc)
                lost.append(card.identity.agent_id)
        if lost:
            raise StateError(
                f"added, but {len(lost)} of {len(cards)} invitations undelivered: "
                "remove and add those agents again"
            )

    async def _send_invite(self, card: VerifiedCard, invite: Invite) -> None:
        """Put ``invite`` in the card's mailbox, retried (one message id: idempotent)
        while the relay fails passingly."""
        offer = card.offer(self.info.name)
        address = offer.url if offer is not None else card.identity.agent_id
        payload = wrap(self.info.name, invite.to_bytes())
        message_id, delay = str(uuid.uuid4()), INVITE_RETRY_FIRST_SECONDS
        for attempt in range(1, INVITE_SEND_ATTEMPTS + 1):
            try:
                await self._relay().send(address, message_id, payload)
                return
            except (RelayUnavailable, LimitExceeded) as exc:
                if attempt == INVITE_SEND_ATTEMPTS:
                    raise
                wait = delay
                if isinstance(exc, LimitExceeded) and exc.retry_after is not None:
                    wait = max(wait, exc.retry_after)
                await asyncio.sleep(wait)
                delay *= 2

    async def fetch_cards(self, roster: Roster, agent_ids: Sequence[str] | None = None) -> None:
        """Fetch from the card directory of the group's relay the cards of ``agent_ids``
        (default: every member whose card the roster lacks) and tie them to their leaves.

        A member is known here by its agent id alone (the leaf's credential),
        which names no home relay: every member publishes its card at the
        group's relay when it joins (see :meth:`_sign_in`)."""
        relay = self._port_of(roster)
        wanted = roster.unknown() if agent_ids is None else list(agent_ids)
        for start in range(0, len(wanted), MAX_CARDS_PER_FETCH):
            batch = wanted[start : start + MAX_CARDS_PER_FETCH]
            roster.admit_fetched(await relay.fetch_cards(batch), self.context.trust)

    async def admit_external(self, group_id: bytes, card: VerifiedCard) -> None:
        """Let the agent of ``card`` join by external commit, if the group's policy
        allows it (:mod:`sealwire_mls._external_join`)."""
        agent_id = card.identity.agent_id
        async with self._lock(group_id):
            roster = self._roster(group_id)
            note = admission_note(roster, card)
            self._storage.save(group_id, roster)
            relay = self._port_of(roster)
            epoch = roster.group.epoch
            seq = await relay.post_group_message(group_id, epoch, note, admit=[agent_id])
            invite = Invite(
                group_id=group_id, seq=seq, relay=relay.url,
                group_info=roster.group.group_info(), external_joins=True,
                max_lifetime=roster.max_lifetime,
            )  # fmt: skip
            await self._send_invite(card, invite)

    # -- joining (§12.4.3.1) -----------------------------------------------------------------

    async def join(self, invite: bytes) -> tuple[GroupMembershipChanged, int]:
        parsed = Invite.from_bytes(invite)
        relay = await self._sign_in(parsed)
        if parsed.group_info:
            return await self._join_external(parsed, relay)
        welcome = MLSMessage.from_bytes(parsed.welcome).body
        if not isinstance(welcome, Welcome):
            raise MLSDecodeError("the invitation holds no Welcome", field="invite.welcome")
        refs = [s.new_member for s in welcome.secrets]
        own = self._storage.key_package_for(refs, self._sig_priv)
        if own is None:
            raise StateError("the Welcome names none of our KeyPackages")
        ref, keys = own
        group = Group.join(
            welcome, keys.key_package, init_priv=keys.init_priv,
            encryption_priv=keys.encryption_priv, signature_priv=self._sig_priv,
        )  # fmt: skip
        if group.group_id != parsed.group_id:
            raise MLSProtocolError("the Welcome is for another group than the invitation says")
        roster = Roster(group, {}, external_joins=parsed.external_joins,
                        max_lifetime=parsed.max_lifetime, relay=relay)  # fmt: skip
        await self.fetch_cards(roster)
        self._storage.save(group.group_id, roster, used_key_package=ref)
        self._rosters[group.group_id] = roster
        try:  # joined whatever happens here: the directory is topped up again later
            await self.publish_key_packages()
        except SealwireError as exc:
            log.warning("KeyPackages not replenished after a join: %s", type(exc).__name__)
        event = GroupMembershipChanged(
            group_id=group.group_id, epoch=group.epoch, members=roster.agent_ids(),
            added=(self._me,),
        )  # fmt: skip
        return event, parsed.seq

    async def _sign_in(self, invite: Invite) -> str | None:
        """The invitation's group relay (None: ours), where this agent's card is then
        published for the other members; DecodeError for a URL that is none."""
        home = self._relay()
        if not invite.relay or invite.relay.rstrip("/") == home.url:
            return None
        port = home.signed_in_at(invite.relay)
        await port.publish_card(self.context.card.card)
        return port.url

    async def _join_external(
        self, invite: Invite, relay: str | None
    ) -> tuple[GroupMembershipChanged, int]:
        """Join by external commit from the invitation's GroupInfo; the commit's log position."""
        group, commit = external_commit(invite, self.context.identity, self._sig_priv, self._now())
        roster = Roster(group, {}, external_joins=invite.external_joins,
                        max_lifetime=invite.max_lifetime, relay=relay)  # fmt: skip
        own = group.member(group.leaf_index)
        assert own is not None  # our own leaf, just committed
        roster.admit(own, self.context.card.card, self.context.trust)
        await self.fetch_cards(roster)
        try:
            seq = await self._port_of(roster).append_commit(
                group.group_id, group.epoch - 1, commit, members=list(roster.agent_ids())
            )
        except EpochConflictError:
            raise StateError("the group moved on before our external commit: ask again") from None
        self._storage.save(group.group_id, roster)
        self._rosters[group.group_id] = roster
        event = GroupMembershipChanged(
            group_id=group.group_id, epoch=group.epoch, members=roster.agent_ids(),
            added=(self._me,),
        )  # fmt: skip
        return event, seq

    # -- messages ------------------------------------------------------------------------------

    async def seal(self, group_id: bytes, frame: bytes) -> bytes:
        async with self._lock(group_id):
            return self._seal(group_id, frame)

    def _seal(self, group_id: bytes, frame: bytes) -> bytes:
        roster = self._roster(group_id)
        message = roster.group.encrypt(frame, os.urandom)
        self._storage.save_ratchets(group_id, roster.group)
        return message

    async def post(self, group_id: bytes, frame: bytes) -> tuple[int, int]:
        """Seal ``frame`` and append it to the log, under the group's lock: the binding
        is the log's only writer, and the epoch it names is the one sealed in."""
        async with self._lock(group_id):
            message = self._seal(group_id, frame)
            epoch = self.epoch(group_id)
            relay = self._log_relay(group_id)
            return await relay.post_group_message(group_id, epoch, message), epoch

    async def process(
        self, group_id: bytes, message: bytes, *, keep: ProcessKeep | None = None
    ) -> GroupEvent | None:
        """Process one log entry; None for proposals and for messages of past epochs
        (already applied, or from before we joined). ``keep`` commits with the new state."""
        async with self._lock(group_id):
            try:
                return await self._process(group_id, message, keep)
            except (MLSDecodeError, MLSProtocolError, MLSAuthenticationError):
                raise  # refused before the group changed (the engine stages, then applies)
            except BaseException:
                # The group may have changed in memory and not in the store (``keep`` or
                # the store failed): the next call starts again from what the store holds.
                self._rosters.pop(group_id, None)
                self._pending.pop(group_id, None)
                raise

    async def _process(
        self, group_id: bytes, message: bytes, keep: ProcessKeep | None
    ) -> GroupEvent | None:
        roster = self._roster(group_id)
        group = roster.group
        try:
            decoded = MLSMessage.from_bytes(message)
        except SealwireError:
            self._reject(group_id, message)
            raise
        parsed = decoded.body
        if isinstance(parsed, PublicMessage):
            epoch = parsed.content.epoch
        elif isinstance(parsed, PrivateMessage):
            epoch = parsed.epoch
        else:
            raise MLSProtocolError("not a group message")
        if epoch < group.epoch or not group.active:
            if isinstance(parsed, PublicMessage) and group.active:
                self._reject(group_id, message)  # a replayed or superseded commit
            return None
        if message == self._pending.get(group_id):
            return self._merge_own(group_id, roster, keep)
        if isinstance(parsed, PublicMessage):
            try:
                return self._process_handshake(group_id, roster, parsed, message, keep)
            except SealwireError:
                if epoch == group.epoch:  # invalid for this epoch: skipped, remembered
                    self._reject(group_id, message)
                raise
        result = group.process(
            message, now=self._now(), max_lifetime=roster.max_lifetime, parsed=decoded
        )
        if not isinstance(result, ApplicationMessage):
            self._storage.save_ratchets(group_id, group, keep=_bind(keep, None))
            return None
        if result.authenticated_data == ADMIT_AAD:
            note_admission(roster, result)
            self._storage.save(group_id, roster, keep=_bind(keep, None))
            return None
        sender = await self._sender(roster, result.sender)
        if sender is None:
            self._storage.save_ratchets(group_id, group, keep=_bind(keep, None))
            raise TrustError("a message from a member whose card is not verified")
        opened = OpenedMessage(
            sender=sender, frame=result.data,
            message_id=hashlib.sha256(message).hexdigest()[:32],
        )  # fmt: skip
        event = GroupMessage(group_id=group_id, epoch=epoch, message=opened)
        self._storage.save_ratchets(group_id, group, keep=_bind(keep, event))
        return event

    def _reject(self, group_id: bytes, message: bytes) -> None:
        """Remember a log entry found invalid in this epoch, and wake a waiting committer."""
        rejected = self._rejected.setdefault(group_id, set())
        if len(rejected) >= MAX_REJECTED:
            rejected.clear()
        rejected.add(hashlib.sha256(message).digest())
        self._signal_advance(group_id)

    async def _sender(self, roster: Roster, leaf_index: int) -> PeerIdentity | None:
        """The verified member at ``leaf_index``, its card fetched if not yet known."""
        peer = roster.peer(leaf_index)
        agent_id = roster.leaves().get(leaf_index)
        if peer is not None or agent_id is None or agent_id in roster.cards:
            return peer
        now = asyncio.get_running_loop().time()
        if self._card_misses.get(agent_id, 0.0) > now:
            return None  # asked lately and not found: an unverified member's messages
        try:
            await self.fetch_cards(roster, [agent_id])
        except SealwireError as exc:  # the relay is unreachable: the message is dropped
            log.warning("cannot fetch the card of %s: %s", agent_id, type(exc).__name__)
        peer = roster.peer(leaf_index)
        if peer is None:
            if len(self._card_misses) >= MAX_CARD_MISSES:
                self._card_misses.clear()
            self._card_misses[agent_id] = now + CARD_RETRY_SECONDS
        return peer

    def _merge_own(
        self, group_id: bytes, roster: Roster, keep: ProcessKeep | None
    ) -> GroupMembershipChanged:
        """Our commit reached the log though we never heard it accepted (a crash, a
        lost answer): merge it now."""
        before = roster.leaves()
        applied = roster.group.merge_pending_commit()
        return self._advanced_to(group_id, roster, before, applied, keep)

    def _process_handshake(
        self,
        group_id: bytes,
        roster: Roster,
        parsed: PublicMessage,
        message: bytes,
        keep: ProcessKeep | None,
    ) -> GroupMembershipChanged | None:
        content = parsed.content
        joining: list[LeafNode] = []
        commit = content.content
        if content.content_type is ContentType.COMMIT and isinstance(commit, Commit):
            joining = [p.key_package.leaf_node for p in commit.proposals if isinstance(p, Add)]
            if content.sender.sender_type is SenderType.NEW_MEMBER_COMMIT:
                if not roster.external_joins:
                    raise TrustError("an external commit in a group whose policy forbids them")
                if commit.path is not None:
                    joining.append(commit.path.leaf_node)
        cards = list(roster.expected.values())
        if joining and content.authenticated_data:
            try:
                cards += decode_cards(content.authenticated_data)
            except MLSDecodeError:  # not our format: the new members stay unverified
                log.warning("a commit's authenticated data carries no cards")
        before = roster.leaves()
        result = roster.group.process(message, now=self._now(), max_lifetime=roster.max_lifetime)
        if not isinstance(result, CommitApplied):
            self._storage.save(group_id, roster, keep=_bind(keep, None))  # a proposal, cached
            return None
        self._admit_added(roster, joining, cards)
        return self._advanced_to(group_id, roster, before, result, keep)

    def _advanced_to(
        self,
        group_id: bytes,
        roster: Roster,
        before: Mapping[int, str],
        applied: CommitApplied,
        keep: ProcessKeep | None,
    ) -> GroupMembershipChanged:
        """A commit was applied: store the new epoch (with ``keep``), wake a waiting
        committer, and say who came and went."""
        self._pending.pop(group_id, None)
        self._rejected.pop(group_id, None)
        roster.forget_departed()
        event = self._membership(group_id, roster, before, applied)
        self._storage.save(group_id, roster, keep=_bind(keep, event))
        self._signal_advance(group_id)
        return event

    def _admit_added(
        self, roster: Roster, leaves: list[LeafNode], cards: list[Mapping[str, Any]]
    ) -> None:
        """Tie each added leaf to the card the committer sent; a leaf that fails stays
        in the group (the commit is valid MLS) but unverified: its messages are refused."""
        by_id: dict[str, Mapping[str, Any]] = {}
        for card in cards:
            try:
                by_id[verify_card(card).identity.agent_id] = card
            except SealwireError:  # a bad card only leaves its member unverified
                continue
        for leaf in leaves:
            agent_id = leaf.credential.agent_id()
            found = by_id.get(agent_id) or roster.cards.get(agent_id) if agent_id else None
            try:
                if found is None:
                    raise TrustError("no card")
                roster.admit(leaf, found, self.context.trust)
            except SealwireError as exc:  # logged; the member stays unverified
                log.warning("added member %s is not verified: %s", agent_id, type(exc).__name__)

    def _membership(
        self, group_id: bytes, roster: Roster, before: Mapping[int, str], applied: CommitApplied
    ) -> GroupMembershipChanged:
        after = roster.leaves()
        removed = tuple(before[i] for i in applied.removed if i in before)
        if applied.removed_me and self._me not in removed:
            removed += (self._me,)
        return GroupMembershipChanged(
            group_id=group_id, epoch=applied.epoch, members=tuple(sorted(set(after.values()))),
            added=tuple(after[i] for i in applied.added if i in after), removed=removed,
        )  # fmt: skip


def _commit_for(message: bytes, epoch: int) -> bool:
    """Whether ``message`` is framed as a commit made in ``epoch`` (valid or not)."""
    try:
        parsed = MLSMessage.from_bytes(message).body
    except SealwireError:
        return False
    if not isinstance(parsed, PublicMessage):
        return False
    content = parsed.content
    return content.content_type is ContentType.COMMIT and content.epoch == epoch


def _bind(keep: ProcessKeep | None, event: GroupEvent | None) -> Keep | None:
    """``keep`` with the event the new state comes with, for :class:`GroupStorage`."""
    if keep is None:
        return None
    return lambda tx: keep(tx, event)
