"""Policy for datagrams: Noise between Sealwire agents, DTLS when the peer offers only DTLS."""

from __future__ import annotations

from typing import Any

import pytest

from sealwire.agent._card import build_card
from sealwire.binding import BindingInfo, Property, SessionBinding, Shape
from sealwire.errors import PolicyError
from sealwire.identity import Identity, VerifiedCard, verify_card
from sealwire.policy import Policy, PolicyConfig, Situation
from sealwire_tls._binding import TlsBinding
from sealwire_tls._dtls_binding import DtlsBinding

DATAGRAM = Situation(datagram=True, online=True)


class Noise(SessionBinding):
    """Stands in for sealwire-noise (not installed beside sealwire-tls alone)."""

    info = BindingInfo(
        name="noise",
        version="1",
        major=1,
        shape=Shape.SESSION,
        properties=frozenset({Property.MUTUAL_AUTH, Property.FORWARD_SECRECY, Property.DATAGRAM}),
        schemes=frozenset({"tcp", "udp"}),
    )

    async def initiate(self, *a: Any) -> Any:
        raise NotImplementedError

    async def respond(self, *a: Any) -> Any:
        raise NotImplementedError


ALL = {cls.info.name: cls for cls in (Noise, DtlsBinding, TlsBinding)}


def card(*bindings: type) -> VerifiedCard:
    return verify_card(
        build_card(
            Identity.generate(),
            name="peer",
            description="d",
            version="0",
            bindings=bindings,
            listen_urls=["tcp://127.0.0.1:7000", "udp://127.0.0.1:7001"],
            relay_address=None,
            options={"tls": {"url": "https://peer.example/a2a"}},
        )
    )


LOCAL = card(Noise, DtlsBinding, TlsBinding)


@pytest.mark.parametrize(
    "offers", [(Noise, DtlsBinding), (DtlsBinding, Noise), (DtlsBinding, Noise, TlsBinding)]
)
def test_noise_is_preferred_between_sealwire_agents(offers: tuple[type, ...]) -> None:
    decision = Policy(PolicyConfig(), ALL).decide(card(*offers), DATAGRAM, LOCAL)
    assert decision.binding == "noise"
    assert decision.url.startswith("udp://")
    assert "noise comes first in policy.prefer" in decision.explain()
    assert any("dtls" in uri for uri, _ in decision.rejected)


def test_dtls_when_the_peer_offers_only_dtls() -> None:
    decision = Policy(PolicyConfig(), ALL).decide(card(DtlsBinding, TlsBinding), DATAGRAM, LOCAL)
    assert decision.binding == "dtls"
    assert decision.url.startswith("udp://")
    assert decision.negotiation.chosen == "urn:sealwire:binding:dtls:1"
    assert "the peer offers only dtls over UDP" in decision.explain()


def test_configuration_can_prefer_dtls() -> None:
    config = PolicyConfig(prefer=("dtls", "noise"))
    decision = Policy(config, ALL).decide(card(Noise, DtlsBinding), DATAGRAM, LOCAL)
    assert decision.binding == "dtls"


def test_no_datagram_binding_in_common_is_refused() -> None:
    with pytest.raises(PolicyError, match="datagram"):
        Policy(PolicyConfig(), ALL).decide(card(TlsBinding), DATAGRAM, LOCAL)
