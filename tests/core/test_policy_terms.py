"""Properties from the negotiation in the policy (issue 20 item 1), binding-agnostic.

A binding that does not override ``session_terms`` keeps working on its static
declaration; one that does is judged on what it states for each peer (from both
cards' parameters, both identities and our options), for ``require``, for the
bindings our own card offers, in ``explain``, and after the handshake.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from sealwire.agent._card import build_card
from sealwire.binding import (
    BindingInfo,
    Party,
    Property,
    SessionBinding,
    SessionTerms,
    Shape,
)
from sealwire.errors import PolicyError
from sealwire.identity import Identity, PublicIdentity, VerifiedCard, verify_card
from sealwire.policy import Policy, PolicyConfig, Situation

P = Property


class _Session(SessionBinding):
    async def initiate(self, *a: Any) -> Any:
        raise NotImplementedError

    async def respond(self, *a: Any) -> Any:
        raise NotImplementedError


class Legacy(_Session):
    """A third-party binding written before session_terms: static properties only."""

    info = BindingInfo(
        name="legacy", version="1", major=1, shape=Shape.SESSION,
        properties=frozenset({P.MUTUAL_AUTH, P.POST_QUANTUM}), schemes=frozenset({"tcp"}),
    )  # fmt: skip


class Hybrid(_Session):
    """PQ only when both cards say ``pq``; PQ auth when both identities have ML-DSA."""

    info = BindingInfo(
        name="hybrid", version="1", major=1, shape=Shape.SESSION,
        properties=frozenset({P.MUTUAL_AUTH}), schemes=frozenset({"tcp"}),
    )  # fmt: skip

    @classmethod
    def card_parameters(
        cls, identity: PublicIdentity, options: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        return {"pq": bool(options.get("pq", False))}

    @classmethod
    def session_terms(cls, local: Party, peer: Party | None) -> SessionTerms:
        props = set(cls.info.properties)
        mine = bool(local.options.get("pq", local.params.get("pq", False)))
        if mine and (peer is None or peer.params.get("pq") is True):
            props.add(P.POST_QUANTUM)
        mine_pq = local.identity is None or local.identity.mldsa_key is not None
        theirs_pq = peer is None or (
            peer.identity is not None and peer.identity.mldsa_key is not None
        )
        if mine_pq and theirs_pq:
            props.add(P.POST_QUANTUM_AUTH)
        return SessionTerms(properties=frozenset(props), protocol="hybrid/1", suite="X+Y")


BINDINGS = {"legacy": Legacy, "hybrid": Hybrid}
PQ_ID = Identity.generate(post_quantum=True)


def card(options: dict[str, Any], identity: Identity | None = None) -> VerifiedCard:
    return verify_card(build_card(
        identity or Identity.generate(), name="a", description="a", version="0",
        bindings=[Hybrid, Legacy], listen_urls=("tcp://127.0.0.1:1",), relay_address=None,
        options={"hybrid": options},
    ))  # fmt: skip


def policy(require: list[str], options: dict[str, Any] | None = None, **kw: Any) -> Policy:
    return Policy(
        PolicyConfig.from_mapping({"require": require, **kw}),
        BINDINGS,
        binding_options={"hybrid": options or {}},
    )


def test_a_binding_without_session_terms_keeps_its_static_properties() -> None:
    local, peer = card({}), card({})
    decision = policy(["post_quantum"], prefer=["legacy"]).decide(peer, Situation(), local)
    assert decision.binding == "legacy"
    assert decision.candidate.properties == Legacy.info.properties
    assert "protocol: (not stated by the binding)" in decision.explain()
    assert Legacy.session_terms(Party(), None).properties == Legacy.info.properties


def test_require_is_judged_on_what_the_binding_states_for_this_peer() -> None:
    local = card({"pq": True})
    both = policy(["post_quantum"], {"pq": True}, deny_bindings=["legacy"])
    decision = both.decide(card({"pq": True}), Situation(), local)
    assert decision.binding == "hybrid" and P.POST_QUANTUM in decision.candidate.properties
    assert "protocol: hybrid/1" in decision.explain() and "suite: X+Y" in decision.explain()
    with pytest.raises(PolicyError, match="hybrid:1: lacks required properties: post_quantum"):
        both.decide(card({}), Situation(), local)


def test_our_card_offers_only_what_our_configuration_can_give() -> None:
    assert Hybrid in policy(["post_quantum"], {"pq": True}).local_offers()
    assert Hybrid not in policy(["post_quantum"], {}).local_offers()
    classical = Identity.generate()
    assert Hybrid not in policy(["post_quantum_auth"]).local_offers(classical.public)
    assert Hybrid in policy(["post_quantum_auth"]).local_offers(PQ_ID.public)


def test_per_peer_require_and_check_session() -> None:
    peer = card({})
    p = Policy(
        PolicyConfig.from_mapping(
            {"peers": {peer.agent_id: {"require": ["post_quantum"]}}, "deny_bindings": ["legacy"]}
        ),
        BINDINGS,
    )
    with pytest.raises(PolicyError, match="post_quantum"):
        p.decide(peer, Situation(), card({}))
    with pytest.raises(PolicyError, match="lacks required properties: post_quantum"):
        p.check_session(peer.agent_id, frozenset({P.MUTUAL_AUTH}))
    p.check_session(peer.agent_id, frozenset({P.MUTUAL_AUTH, P.POST_QUANTUM}))
    p.check_session(card({}).agent_id, frozenset())  # nothing required of other peers
