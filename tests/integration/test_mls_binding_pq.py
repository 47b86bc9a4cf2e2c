"""The MLS binding on a post-quantum suite, chosen by the binding option ``cipher_suite``.

Over a real relay on loopback: agents configured with ``[bindings.mls]
cipher_suite = "MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519"`` publish X-Wing
KeyPackages, create X-Wing groups, add each other and talk; an agent on the
default suite cannot be added to such a group (a typed error); a suite an agent
cannot use (ML-DSA signatures, unknown names) is a configuration error.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ports import free_port
from waiting import until

from sealwire.agent import Agent, TaskContext
from sealwire.binding import Party, Property
from sealwire.errors import ConfigurationError, SealwireError
from sealwire.identity import Identity
from sealwire.relay import RelayClient
from sealwire.store import MemoryStore
from sealwire_mls import MlsBinding
from sealwire_mls.agents import agent_suite
from sealwire_mls.crypto import PQ_CIPHER_SUITES
from sealwire_relay import RelayConfig, running_relay

TIMEOUT = 20
XWING = "MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519"
MLDSA65 = "MLS_192_MLKEM768_AES256GCM_SHA384_MLDSA65"


@pytest.fixture
async def start(tmp_path: Any) -> AsyncIterator[Any]:
    config = RelayConfig(
        port=free_port(), identity_path=tmp_path / "relay.key", backend="sqlite",
        backend_options={"path": str(tmp_path / "relay.sqlite3")},
    )  # fmt: skip
    agents: list[Agent] = []
    async with running_relay(config) as relay, contextlib.AsyncExitStack() as stack:

        async def start_agent(name: str, *, post_quantum: bool = False, **options: Any) -> Agent:
            identity = Identity.generate(post_quantum=post_quantum)
            client = RelayClient(relay.url, identity)
            stack.push_async_callback(client.close)
            agent = Agent(
                identity, MemoryStore(), name=name, relay=client, binding_options={"mls": options},
            )  # fmt: skip

            async def handler(task: TaskContext) -> None:
                await task.complete(f"{name} here")

            agent.on_message(handler)
            await agent.start()
            agents.append(agent)
            return agent

        yield start_agent
        for agent in agents:
            await agent.stop()


def _suite_of(agent: Agent, group: bytes) -> int:
    binding: Any = agent._bindings["mls"]
    return int(binding.registry.roster(group).group.context.cipher_suite)


async def test_agents_talk_in_an_xwing_group(start: Any) -> None:
    alice = await start("alice", cipher_suite=XWING)
    bob = await start("bob", cipher_suite=PQ_CIPHER_SUITES[XWING])  # by id works too
    group = await alice.create_group()
    await alice.add_to_group(group, [bob.card])
    await until(lambda: group in bob.groups(), "Bob's join")
    assert _suite_of(alice, group) == _suite_of(bob, group) == PQ_CIPHER_SUITES[XWING]
    replies = await alice.send_to_group(group, "hello", timeout=TIMEOUT)
    assert [r.result.status.message.parts[0].text for r in replies] == ["bob here"]


async def test_an_agent_on_another_suite_is_not_added(start: Any) -> None:
    alice = await start("alice", cipher_suite=XWING)
    carol = await start("carol")  # the default, suite 1
    group = await alice.create_group()
    with pytest.raises(SealwireError, match="another cipher suite"):
        await alice.add_to_group(group, [carol.card])
    assert group not in carol.groups()


async def test_post_quantum_agents_talk_in_an_ml_dsa_group(start: Any) -> None:
    """Key exchange and authentication post-quantum: each member signs with its card's
    ML-DSA-65 key, which every other member checks its leaf against."""
    alice = await start("alice", post_quantum=True, cipher_suite=MLDSA65)
    bob = await start("bob", post_quantum=True, cipher_suite=MLDSA65)
    group = await alice.create_group()
    await alice.add_to_group(group, [bob.card])
    await until(lambda: group in bob.groups(), "Bob's join")
    assert _suite_of(alice, group) == _suite_of(bob, group) == PQ_CIPHER_SUITES[MLDSA65]
    binding: Any = bob._bindings["mls"]
    members = binding.registry.roster(group).group.members
    mldsa_keys = {alice.identity.mldsa_key.public_key().public_bytes_raw(),
                  bob.identity.mldsa_key.public_key().public_bytes_raw()}  # fmt: skip
    assert {leaf.signature_key for _, leaf in members} == mldsa_keys
    replies = await alice.send_to_group(group, "hello", timeout=TIMEOUT)
    assert [r.result.status.message.parts[0].text for r in replies] == ["bob here"]


async def test_an_ml_dsa_suite_needs_an_ml_dsa_key(start: Any) -> None:
    with pytest.raises(ConfigurationError, match="no ML-DSA-65 key"):
        await start("classic", cipher_suite=MLDSA65)


@pytest.mark.parametrize("bad", ["MLS_NOPE", 0xF0A9, 0xF0AB, 2, 0xFFFF, True, 1.0])
def test_a_suite_agents_cannot_use_is_a_configuration_error(bad: object) -> None:
    with pytest.raises(ConfigurationError):
        agent_suite({"cipher_suite": bad})


def test_the_option_reads_names_and_ids() -> None:
    assert agent_suite({}) == 1
    assert agent_suite({"cipher_suite": XWING}) == 0xF0A1
    assert agent_suite({"cipher_suite": "MLS_128_MLKEM768_AES256GCM_SHA384_Ed25519"}) == 0xF0A6
    assert agent_suite({"cipher_suite": 3}) == 3
    assert agent_suite({"cipher_suite": MLDSA65}) == 0xF0AA


@pytest.mark.parametrize(
    ("suite", "post_quantum", "post_quantum_auth"),
    [(None, False, False), (XWING, True, False), (MLDSA65, True, True)],
)
def test_the_policy_sees_the_suite_properties(
    suite: str | None, post_quantum: bool, post_quantum_auth: bool
) -> None:
    """`require = ["post_quantum"]` is met by an MLS group on a post-quantum suite only."""
    options = {} if suite is None else {"cipher_suite": suite}
    terms = MlsBinding.session_terms(Party(options=options), None)
    assert (Property.POST_QUANTUM in terms.properties) is post_quantum
    assert (Property.POST_QUANTUM_AUTH in terms.properties) is post_quantum_auth
    assert terms.protocol == "MLS 1.0"
    assert terms.suite == (suite or "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519")
