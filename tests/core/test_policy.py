"""Policy: the default table, configuration, overrides, rules, reasons, downgrades."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from sealwire.agent._card import build_card
from sealwire.binding import (
    BindingInfo,
    GroupBinding,
    MailboxBinding,
    Negotiation,
    Property,
    SessionBinding,
    Shape,
)
from sealwire.errors import ConfigurationError, PolicyError
from sealwire.identity import Identity, verify_card
from sealwire.policy import Policy, PolicyConfig, PolicyRule, Situation

P = Property


def _info(name: str, shape: Shape, *props: Property, schemes: tuple[str, ...] = ()) -> BindingInfo:
    return BindingInfo(
        name=name,
        version="1.0",
        major=1,
        shape=shape,
        properties=frozenset(props),
        schemes=frozenset(schemes),
    )


class FakeSession(SessionBinding):
    async def initiate(self, *a: Any) -> Any:
        raise NotImplementedError

    async def respond(self, *a: Any) -> Any:
        raise NotImplementedError


class Noise(FakeSession):
    info = _info(
        "noise",
        Shape.SESSION,
        P.MUTUAL_AUTH,
        P.FORWARD_SECRECY,
        P.DATAGRAM,
        schemes=("tcp", "ws", "udp"),
    )


class Tls(FakeSession):
    info = _info(
        "tls", Shape.SESSION, P.MUTUAL_AUTH, P.FORWARD_SECRECY, P.HTTP_INTEROP, schemes=("https",)
    )


class Signal(MailboxBinding):
    info = _info(
        "signal",
        Shape.MAILBOX,
        P.MUTUAL_AUTH,
        P.FORWARD_SECRECY,
        P.POST_COMPROMISE_SECURITY,
        P.ASYNC,
    )
    seal = open = publish_prekeys = FakeSession.initiate  # type: ignore[assignment]


class Mls(GroupBinding):
    info = _info(
        "mls",
        Shape.GROUP,
        P.MUTUAL_AUTH,
        P.FORWARD_SECRECY,
        P.POST_COMPROMISE_SECURITY,
        P.GROUP,
        P.ASYNC,
    )
    create_group = add_members = remove_members = update = seal = post = process = (  # type: ignore[assignment]
        FakeSession.initiate
    )
    export_secret = FakeSession.initiate  # type: ignore[assignment]


ALL = {cls.info.name: cls for cls in (Noise, Tls, Signal, Mls)}


def card(*bindings: type, identity: Identity | None = None):
    identity = identity or Identity.generate()
    return verify_card(
        build_card(
            identity,
            name="peer",
            description="d",
            version="0",
            bindings=bindings,
            listen_urls=["tcp://127.0.0.1:7000", "udp://127.0.0.1:7001"],
            relay_address="https://relay.example/mailbox/x",
            options={"tls": {"url": "https://peer.example/a2a"}},
        )
    )


PEER = card(Noise, Signal, Mls, Tls)
LOCAL = card(Noise, Signal, Mls, Tls)


@pytest.mark.parametrize(
    ("situation", "expected", "url_prefix"),
    [
        (Situation(online=True), "noise", "tcp://"),
        (Situation(), "noise", "tcp://"),
        (Situation(online=False), "signal", "https://relay"),
        (Situation(group=True), "mls", "https://relay"),
        (Situation(external_http=True), "tls", "https://peer"),
        (Situation(datagram=True, online=True), "noise", "udp://"),
    ],
)
def test_default_table(situation: Situation, expected: str, url_prefix: str) -> None:
    decision = Policy(PolicyConfig(), ALL).decide(PEER, situation, LOCAL)
    assert decision.binding == expected
    assert decision.url.startswith(url_prefix)
    assert decision.reason
    assert decision.negotiation.chosen == decision.candidate.offer.uri
    assert decision.negotiation.responder_offers == tuple(o.uri for o in PEER.offers)


@pytest.mark.parametrize(
    "situation", [Situation(), Situation(online=True), Situation(online=False)]
)
def test_a_tls_only_peer_is_reached_without_saying_http(situation: Situation) -> None:
    """A peer that offers only an HTTP-interoperable binding needs no --situation http."""
    decision = Policy(PolicyConfig(), ALL).decide(card(Tls), situation, LOCAL)
    assert decision.binding == "tls" and "HTTP-interoperable" in decision.reason


def test_required_property_filters_and_says_why() -> None:
    config = PolicyConfig(require=frozenset({P.POST_COMPROMISE_SECURITY}))
    decision = Policy(config, ALL).decide(PEER, Situation(online=True), LOCAL)
    assert decision.binding == "signal"
    assert any("lacks required properties" in why for _uri, why in decision.rejected)
    assert "noise" in decision.explain() and "not chosen" in decision.explain()


def test_denied_binding_and_denied_peer() -> None:
    config = PolicyConfig(deny_bindings=frozenset({"noise"}))
    assert Policy(config, ALL).decide(PEER, Situation(online=True), LOCAL).binding == "signal"
    config = PolicyConfig(deny_peers=frozenset({PEER.identity.agent_id}))
    with pytest.raises(PolicyError, match="denied"):
        Policy(config, ALL).decide(PEER, Situation(), LOCAL)


def test_per_peer_override_from_toml() -> None:
    config = PolicyConfig.from_toml(f"""
[policy]
require = ["mutual_auth"]
[policy.peers."{PEER.identity.agent_id}"]
binding = "signal"
""")
    decision = Policy(config, ALL).decide(PEER, Situation(online=True), LOCAL)
    assert decision.binding == "signal"
    assert "override" in decision.reason


def test_override_naming_an_unoffered_binding_fails() -> None:
    peer = card(Noise)
    config = PolicyConfig.from_mapping({"peers": {peer.identity.agent_id: {"binding": "mls"}}})
    with pytest.raises(PolicyError, match="requires binding 'mls'"):
        Policy(config, ALL).decide(peer, Situation(), LOCAL)


@pytest.mark.parametrize(
    "text",
    [
        "[policy]\nrequire = ['teleportation']",
        "[policy]\nfoo = 1",
        "[policy]\ndeny_peers = 'x'",
        "[policy\n",
        "[policy.peers.x]\nbinding = 3",
    ],
)
def test_bad_configuration_names_the_key(text: str) -> None:
    with pytest.raises(ConfigurationError, match=r"policy|TOML"):
        PolicyConfig.from_toml(text)


def test_no_common_binding() -> None:
    peer = card(Tls)
    with pytest.raises(PolicyError, match=r"no binding in common|HTTP|none"):
        Policy(PolicyConfig(), {"noise": Noise}).decide(peer, Situation(), LOCAL)


def test_group_without_group_binding_fails_clearly() -> None:
    with pytest.raises(PolicyError, match="group"):
        Policy(PolicyConfig(), ALL).decide(card(Noise, Signal), Situation(group=True), LOCAL)


def test_plugin_rule_decides_before_defaults_but_within_config() -> None:
    rule = PolicyRule(
        name="prefer-mailbox",
        decide=lambda peer, sit, cands: next(
            ((c, "mailbox first") for c in cands if c.info.name == "signal"), None
        ),
    )
    decision = Policy(PolicyConfig(), ALL, [rule]).decide(PEER, Situation(online=True), LOCAL)
    assert decision.binding == "signal" and "prefer-mailbox" in decision.reason
    config = PolicyConfig(deny_bindings=frozenset({"signal"}))
    decision = Policy(config, ALL, [rule]).decide(PEER, Situation(online=True), LOCAL)
    assert decision.binding == "noise"


def test_local_offers_follow_preference_and_config() -> None:
    policy = Policy(PolicyConfig(prefer=("signal", "noise"), deny_bindings=frozenset({"tls"})), ALL)
    assert [c.info.name for c in policy.local_offers()] == ["signal", "noise", "mls"]


def test_responder_refuses_a_downgraded_negotiation() -> None:
    policy = Policy(PolicyConfig(), ALL)
    honest = policy.decide(LOCAL, Situation(), PEER).negotiation
    assert policy.check_incoming(honest, LOCAL) is Noise
    stripped = attrs.evolve(honest, responder_offers=honest.responder_offers[1:])
    with pytest.raises(PolicyError, match="differs from our card"):
        policy.check_incoming(stripped, LOCAL)
    unknown = attrs.evolve(honest, chosen="urn:sealwire:binding:rot13:1")
    with pytest.raises(PolicyError, match="not one we offer"):
        policy.check_incoming(unknown, LOCAL)


def test_negotiation_transcript_changes_with_every_field() -> None:
    base = Negotiation(chosen="a", initiator_offers=("a", "b"), responder_offers=("a",))
    variants = [
        attrs.evolve(base, chosen="b"),
        attrs.evolve(base, initiator_offers=("a",)),
        attrs.evolve(base, initiator_offers=("b", "a")),
        attrs.evolve(base, responder_offers=("a", "b")),
        Negotiation(chosen="a", initiator_offers=("a", "b", "a"), responder_offers=()),
    ]
    transcripts = {v.transcript() for v in variants} | {base.transcript()}
    assert len(transcripts) == len(variants) + 1
    assert Negotiation.from_json(base.to_json()) == base
