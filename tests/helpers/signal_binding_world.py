"""Two or more agents running SignalBinding against an in-memory fake relay directory,
for the Signal binding's tests."""

from __future__ import annotations

import attrs

from sealwire.agent._card import build_card
from sealwire.binding import BindingContext, Negotiation
from sealwire.identity import Identity, TrustMode, TrustStore, verify_card
from sealwire.relay import FetchedPrekeys, mailbox_address
from sealwire.store import MemoryStore
from sealwire_signal._binding import SignalBinding

RELAY = "https://relay.test"
OTHER_RELAY = "https://other-relay.test"


class Directory:
    """The relay's prekey directory, in memory: one-time keys are handed out once."""

    def __init__(self) -> None:
        self.bundles: dict[tuple[str, str], bytes] = {}
        self.pools: dict[tuple[str, str], dict[str, dict[str, bytes]]] = {}


class FakeRelayClient:
    """The three prekey calls of ``sealwire.relay.RelayClient``, for one agent, and ``at``:
    the directory of another relay among ``relays`` (by URL)."""

    def __init__(
        self,
        directory: Directory,
        agent_id: str,
        *,
        url: str = RELAY,
        relays: dict[str, Directory] | None = None,
    ) -> None:
        self.directory, self.agent_id = directory, agent_id
        self.url, self.relays = url, relays or {}

    def at(self, url: str) -> FakeRelayClient:
        if url == self.url:
            return self
        return FakeRelayClient(self.relays[url], "lookup", url=url, relays=self.relays)

    async def publish_prekeys(self, binding, bundle, one_time) -> None:
        key = (self.agent_id, binding)
        self.directory.bundles[key] = bundle
        pools = self.directory.pools.setdefault(key, {})
        for pool, keys in one_time.items():
            pools.setdefault(pool, {}).update(keys)

    async def fetch_prekeys(self, agent_id, binding) -> FetchedPrekeys:
        key = (agent_id, binding)
        taken = {}
        for pool, keys in self.directory.pools.get(key, {}).items():
            first = next(iter(keys), None)
            taken[pool] = None if first is None else (first, keys.pop(first))
        return FetchedPrekeys(self.directory.bundles[key], taken)

    async def count_prekeys(self, binding):
        pools = self.directory.pools.get((self.agent_id, binding), {})
        return {pool: len(keys) for pool, keys in pools.items()}


@attrs.define
class Clock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@attrs.define
class Agent:
    identity: Identity
    card: object
    store: object
    binding: SignalBinding
    context: BindingContext

    def restart(self) -> Agent:
        return attrs.evolve(self, binding=SignalBinding(self.context))


def make_agent(
    directory, clock, *, store=None, options=None, home=RELAY, relays=None, identity=None,
    description="test agent",
) -> Agent:  # fmt: skip
    identity = identity or Identity.generate()
    opts = dict(options or {})
    card = verify_card(build_card(
        identity, name="agent", description=description, version="0",
        bindings=[SignalBinding], listen_urls=(), options={"signal": opts},
        relay_address=mailbox_address(home, identity.agent_id),
    ))  # fmt: skip
    store = store if store is not None else MemoryStore()
    relay = FakeRelayClient(directory, identity.agent_id, url=home, relays=relays)
    context = BindingContext(
        identity=identity, card=card, store=store, trust=TrustStore(store, TrustMode.TOFU),
        relay=relay, clock=clock, options=opts,
    )  # fmt: skip
    return Agent(identity, card, store, SignalBinding(context), context)


def negotiation(sender: Agent, recipient: Agent) -> Negotiation:
    return Negotiation(
        chosen=SignalBinding.info.uri,
        initiator_offers=tuple(o.uri for o in sender.card.offers),
        responder_offers=tuple(o.uri for o in recipient.card.offers),
    )


async def seal(sender: Agent, recipient: Agent, frame: bytes) -> bytes:
    return await sender.binding.seal(recipient.card, frame, negotiation(sender, recipient))


async def pair(world, make_store=None, **options):
    """Alice and Bob with published prekeys; ``make_store()`` gives each its own store."""
    directory, clock = world
    alice, bob = (
        make_agent(directory, clock, store=make_store and make_store(), **options) for _ in range(2)
    )
    await alice.binding.publish_prekeys()
    await bob.binding.publish_prekeys()
    return alice, bob
