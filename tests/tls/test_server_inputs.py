"""The HTTPS side's handling of hostile input: enrolment bodies, card headers, certificates.

Whatever arrives, the answer is a result or a SealwireError, and a refused
enrolment adds no trust anchor.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from sealwire.errors import AuthenticationError, SealwireError
from sealwire.identity import Identity
from sealwire.testing.contract import Party, make_party
from sealwire_tls import CARD_HEADER, TlsBinding, TlsServer, self_signed_certificate
from sealwire_tls._channel import b64url
from sealwire_tls._server import TLS_NAMESPACE

URL = {"url": "https://127.0.0.1:1"}


def _server(party: Party) -> TlsServer:
    chain = [self_signed_certificate(party.identity)]
    return TlsServer(lambda: party.binding.context, chain, binding_uri=TlsBinding.info.uri)


def _scope(identity: Identity | None) -> dict[str, Any]:
    if identity is None:
        return {"extensions": {"tls": {"client_cert_chain": []}}}
    der = self_signed_certificate(identity).public_bytes(Encoding.DER)
    return {"extensions": {"tls": {"client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)]}}}


def _enrolment(card: Any, identity: Identity) -> bytes:
    der = self_signed_certificate(identity).public_bytes(Encoding.DER)
    return json.dumps({"card": card, "certificate": b64url(der)}).encode()


@pytest.fixture(scope="module")
def parties() -> tuple[Party, Party]:
    """Shared by the property tests, which leave no state behind."""
    return fresh()


def fresh() -> tuple[Party, Party]:
    return make_party(TlsBinding, options=URL), make_party(TlsBinding, options=URL)


@settings(max_examples=150, deadline=None)
@given(body=st.one_of(st.binary(max_size=300), st.builds(
    lambda d: json.dumps(d).encode(),
    st.dictionaries(st.sampled_from(["card", "certificate"]),
                    st.one_of(st.text(max_size=50), st.integers(), st.none())))))  # fmt: skip
async def test_hostile_enrolments_add_no_anchor(parties: tuple[Party, Party], body: bytes) -> None:
    server = _server(parties[0])
    try:
        status, _ = await server.enroll({}, {}, body)
        assert status != 200
    except SealwireError:
        pass
    assert parties[0].binding.context.store.keys(TLS_NAMESPACE) == []


async def test_enrolment_needs_the_cards_own_certificate() -> None:
    host, guest = fresh()
    server = _server(host)
    with pytest.raises(AuthenticationError):  # someone else's certificate
        await server.enroll({}, {}, _enrolment(dict(guest.card.card), Identity.generate()))
    tampered = {**dict(guest.card.card), "name": "evil"}
    with pytest.raises(SealwireError):
        await server.enroll({}, {}, _enrolment(tampered, guest.identity))
    assert host.binding.context.store.keys(TLS_NAMESPACE) == []
    body = _enrolment(dict(guest.card.card), guest.identity)
    assert (await server.enroll({}, {}, body))[0] == 200
    assert (await server.enroll({}, {}, body))[0] == 200  # idempotent
    assert host.binding.context.store.keys(TLS_NAMESPACE) == [f"client/{guest.card.agent_id}"]


async def test_identify_callers() -> None:
    host, guest = fresh()
    server = _server(host)
    card_header = b64url(json.dumps(dict(guest.card.card)).encode())
    peer = await server.identify(_scope(guest.identity), {CARD_HEADER.lower(): card_header})
    assert peer.agent_id == guest.card.agent_id and peer.card is not None
    with pytest.raises(AuthenticationError):  # no certificate
        await server.identify(_scope(None), {CARD_HEADER.lower(): card_header})
    with pytest.raises(AuthenticationError):  # a card that is not the certificate's agent
        await server.identify(_scope(Identity.generate()), {CARD_HEADER.lower(): card_header})
    with pytest.raises(AuthenticationError):  # no card, not pinned
        await server.identify(_scope(Identity.generate()), {})
    host.binding.context.trust.deny(guest.card.agent_id)
    with pytest.raises(AuthenticationError):  # denied, even though verified before
        await server.identify(_scope(guest.identity), {CARD_HEADER.lower(): card_header})


@settings(max_examples=150, deadline=None)
@given(header=st.text(max_size=300))
async def test_hostile_card_headers_raise_sealwire_errors_only(
    parties: tuple[Party, Party], header: str
) -> None:
    server = _server(parties[0])
    with pytest.raises(SealwireError):
        await server.identify(_scope(Identity.generate()), {CARD_HEADER.lower(): header})
