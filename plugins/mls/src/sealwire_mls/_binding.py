"""The MLS group binding: RFC 9420 groups of agents over the relay's group log.

Rules of the binding (this module and the ones it composes):

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
* Members' cards: a commit adding agents carries theirs; a joiner fetches each
  other member's card from the relay's card directory (each agent publishes its
  own card with its KeyPackages) when that member's first message comes, not
  at the join: joining a group of N costs no N card lookups and verifications.

The binding composes the groups held in memory (:mod:`sealwire_mls._group_registry`),
the committer (:mod:`sealwire_mls._committing`, with :mod:`sealwire_mls._invitations`)
and the log processor (:mod:`sealwire_mls._log_processing`); it creates and joins
groups and seals messages itself.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from importlib.metadata import version
from typing import Any

from sealwire.binding import (
    BindingInfo,
    GroupBinding,
    GroupEvent,
    GroupMembershipChanged,
    Party,
    Property,
    SessionTerms,
    Shape,
)
from sealwire.errors import ConfigurationError, SealwireError, StateError
from sealwire.identity import VerifiedCard
from sealwire.relay import (
    EpochConflictError,
    RelayPort,
    peer_directory,
)
from sealwire_mls._committing import GroupCommitter
from sealwire_mls._external_join import (
    admission_note,
    external_commit,
)
from sealwire_mls._group_registry import GroupRegistry
from sealwire_mls._invitations import send_invite
from sealwire_mls._log_processing import GroupLogProcessor, ProcessKeep
from sealwire_mls._members import (
    MAX_LIFETIME_CAP_DAYS,
    Invite,
    Roster,
)
from sealwire_mls._storage import GroupStorage
from sealwire_mls.agents import (
    agent_key_package,
    agent_signature_key,
    agent_suite,
    agent_suites,
    check_member,
)
from sealwire_mls.codec import decode_exact
from sealwire_mls.crypto import PQ_AUTH_CIPHER_SUITES, PQ_CIPHER_SUITES, cipher_suite
from sealwire_mls.errors import MLSDecodeError, MLSProtocolError
from sealwire_mls.group import Group
from sealwire_mls.keypackage import MAX_LIFETIME_SECONDS, KeyPackage
from sealwire_mls.welcome import MLSMessage, Welcome

__all__ = ["MlsBinding"]

log = logging.getLogger(__name__)

SUITE = 1
"""MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519: its signature key is the agent's own.
The default; the binding option ``cipher_suite`` picks another suite whose signature
key is one of the agent's (a post-quantum one: see :func:`sealwire_mls.agents.agent_suite`)."""
KEY_PACKAGE_TARGET = 8
"""KeyPackages kept in the relay's directory: enough for several invitations while
the agent is offline, few enough that unused private keys stay a small set."""
MAX_GROUP_ID_BYTES = 64
"""Group ids are store keys (hex) and relay names: 64 bytes is ample for random ids."""
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
        self.registry = GroupRegistry(context, self._storage, self._sig_priv)
        self.committer = GroupCommitter(self.registry, context, binding=self.info.name)
        self.processor = GroupLogProcessor(self.registry, context)
        self._published_card: object = None  # the card last published to the relay

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
        return self.registry.home()

    def group_relay(self, group_id: bytes) -> RelayPort | None:
        url = self.registry.roster(group_id).relay
        return None if url is None else self._relay().signed_in_at(url)

    def groups(self) -> list[bytes]:
        """Every group this agent holds state for."""
        return self._storage.groups()

    def members(self, group_id: bytes) -> tuple[str, ...]:
        return self.registry.roster(group_id).agent_ids()

    def epoch(self, group_id: bytes) -> int:
        """The group's current epoch."""
        return self.registry.epoch(group_id)

    def epoch_authenticator(self, group_id: bytes) -> bytes:
        """The epoch authenticator (§8.7), to compare with other members out of band."""
        return self.registry.roster(group_id).group.epoch_authenticator()

    def export_secret(self, group_id: bytes, label: str, context: bytes, length: int) -> bytes:
        group = self.registry.roster(group_id).group
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
        self.registry.hold(group_id, roster)

    async def add_members(self, group_id: bytes, members: Sequence[VerifiedCard]) -> None:
        roster = self.registry.roster(group_id)
        adds: dict[str, tuple[VerifiedCard, KeyPackage]] = {}
        for card in members:
            agent_id = card.identity.agent_id
            if agent_id == self._me or roster.leaf_of(agent_id) is not None or agent_id in adds:
                continue
            adds[agent_id] = (card, await self._fetch_key_package(card))
        await self.committer.commit(group_id, adds=adds)

    async def remove_members(self, group_id: bytes, agent_ids: Sequence[str]) -> None:
        if self._me in agent_ids:
            raise StateError("a member cannot remove itself (§12.2): ask another member")
        await self.committer.commit(group_id, removes=frozenset(agent_ids))

    async def update(self, group_id: bytes) -> None:
        await self.committer.commit(group_id, update=True)

    async def admit_external(self, group_id: bytes, card: VerifiedCard) -> None:
        """Let the agent of ``card`` join by external commit, if the group's policy
        allows it (:mod:`sealwire_mls._external_join`)."""
        agent_id = card.identity.agent_id
        async with self.registry.lock(group_id):
            roster = self.registry.roster(group_id)
            note = admission_note(roster, card)
            self._storage.save(group_id, roster)
            relay = self.registry.port_of(roster)
            epoch = roster.group.epoch
            seq = await relay.post_group_message(group_id, epoch, note, admit=[agent_id])
            invite = Invite(
                group_id=group_id, seq=seq, relay=relay.url,
                group_info=roster.group.group_info(), external_joins=True,
                max_lifetime=roster.max_lifetime,
            )  # fmt: skip
            await send_invite(self._relay(), self.info.name, card, invite)

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
        self._storage.save(group.group_id, roster, used_key_package=ref)
        self.registry.hold(group.group_id, roster)
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
        try:
            seq = await self.registry.port_of(roster).append_commit(
                group.group_id, group.epoch - 1, commit, members=list(roster.agent_ids())
            )
        except EpochConflictError:
            raise StateError("the group moved on before our external commit: ask again") from None
        self._storage.save(group.group_id, roster)
        self.registry.hold(group.group_id, roster)
        event = GroupMembershipChanged(
            group_id=group.group_id, epoch=group.epoch, members=roster.agent_ids(),
            added=(self._me,),
        )  # fmt: skip
        return event, seq

    # -- messages ------------------------------------------------------------------------------

    async def seal(self, group_id: bytes, frame: bytes) -> bytes:
        async with self.registry.lock(group_id):
            return self._seal(group_id, frame)

    def _seal(self, group_id: bytes, frame: bytes) -> bytes:
        roster = self.registry.roster(group_id)
        message = roster.group.encrypt(frame, os.urandom)
        self._storage.save_ratchets(group_id, roster.group)
        return message

    async def post(self, group_id: bytes, frame: bytes) -> tuple[int, int]:
        """Seal ``frame`` and append it to the log, under the group's lock: the binding
        is the log's only writer, and the epoch it names is the one sealed in."""
        async with self.registry.lock(group_id):
            message = self._seal(group_id, frame)
            epoch = self.epoch(group_id)
            relay = self.registry.log_relay(group_id)
            return await relay.post_group_message(group_id, epoch, message), epoch

    async def process(
        self, group_id: bytes, message: bytes, *, keep: ProcessKeep | None = None
    ) -> GroupEvent | None:
        """Process one log entry; None for proposals and for messages of past epochs
        (already applied, or from before we joined). ``keep`` commits with the new state."""
        return await self.processor.process(group_id, message, keep=keep)
