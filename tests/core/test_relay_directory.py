"""Directories of other relays (federation, issue 14.5): ``RelayPort.at`` and ``peer_directory``.

A peer's prekeys, KeyPackages and card are looked up at the peer's home relay,
which its card names. Such a lookup authenticates under an identity made for
it, never the agent's own: the relay asked is chosen by someone else's card.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from ports import free_port

from sealwire.errors import DecodeError
from sealwire.identity import (
    Identity,
    VerifiedCard,
    binding_uri,
    build_identity_extension,
    sign_card,
    verify_card,
)
from sealwire.relay import RelayAuthError, RelayClient, mailbox_address, peer_directory
from sealwire.relay._client import MAX_DIRECTORY_RELAYS
from sealwire_relay import RelayConfig, RunningRelay, running_relay

HOME = "http://127.0.0.1:9"
ELSEWHERE = "https://relay.example:8443/base"


@pytest.fixture
async def client() -> AsyncIterator[RelayClient]:
    async with RelayClient(HOME, Identity.generate()) as made:
        yield made


async def test_own_url_is_the_port_itself_and_others_are_kept_per_url(
    client: RelayClient,
) -> None:
    assert client.at(HOME) is client
    assert client.at(HOME + "/") is client
    other = client.at(ELSEWHERE)
    assert other is not client
    assert other.url == ELSEWHERE
    assert client.at(ELSEWHERE + "/") is other


async def test_directories_kept_are_bounded_least_recently_used_first(
    client: RelayClient,
) -> None:
    first, second = client.at("http://r0.test"), client.at("http://r1.test")
    for i in range(2, MAX_DIRECTORY_RELAYS + 1):
        client.at(f"http://r{i}.test")
        client.at("http://r0.test")  # kept in use
    assert client.at("http://r0.test") is first
    assert client.at("http://r1.test") is not second  # the least recently used went


@pytest.mark.parametrize(
    "url",
    [
        "ftp://relay.test",
        "relay.test",
        "http://",
        "http://relay.test/?x=1",
        "http://[::1",
        "http://relay.test:x",
        "http://r.test:0",
    ],
)
async def test_a_url_that_is_not_a_relay_base_url_is_refused(client: RelayClient, url: str) -> None:
    with pytest.raises(DecodeError):
        client.at(url)


def _card(identity: Identity, address: str) -> VerifiedCard:
    """A signed card offering ``signal`` at ``address`` (a mailbox address, or not)."""
    signal = binding_uri("signal", 1)
    card = {
        "name": "peer",
        "description": "peer",
        "version": "1.0.0",
        "supportedInterfaces": [
            {"url": address, "protocolBinding": signal, "protocolVersion": "1.0"}
        ],
        "capabilities": {"extensions": [build_identity_extension(identity.public, {signal: {}})]},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "echo", "name": "Echo", "description": "echoes", "tags": ["t"]}],
    }
    return verify_card(sign_card(card, identity))


async def test_a_peer_is_looked_up_at_the_home_relay_its_card_names(
    client: RelayClient,
) -> None:
    peer = Identity.generate()
    elsewhere = _card(peer, mailbox_address(ELSEWHERE, peer.agent_id))
    assert peer_directory(client, elsewhere, "signal") is client.at(ELSEWHERE)
    at_home = _card(peer, mailbox_address(HOME, peer.agent_id))
    assert peer_directory(client, at_home, "signal") is client
    # A card naming no home, a mailbox of another agent, or no such binding: our relay.
    assert peer_directory(client, _card(peer, peer.agent_id), "signal") is client
    stranger = mailbox_address(ELSEWHERE, Identity.generate().agent_id)
    assert peer_directory(client, _card(peer, stranger), "signal") is client
    assert peer_directory(client, elsewhere, "mls") is client


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[RunningRelay]:
    config = RelayConfig(
        port=free_port(), identity_path=tmp_path / "relay.key", backend="sqlite",
        backend_options={"path": str(tmp_path / "relay.sqlite3")},
    )  # fmt: skip
    async with running_relay(config) as running:
        yield running


async def test_a_relay_under_another_name_gets_no_session(relay: RunningRelay) -> None:
    """The relay a peer's card or an invitation names may pass our home relay's challenge
    on to us (here: our home relay itself under another name, so even its challenge and
    its proof of identity are genuine). What the agent signs names the URL it dialled:
    the home relay refuses it, as the agent (``signed_in_at``) or as a lookup (``at``)."""
    alice, bob = Identity.generate(), Identity.generate()
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    async with httpx.AsyncClient(event_hooks={"request": [record]}) as http:
        home = RelayClient(relay.url, alice, http=http)
        await RelayClient(relay.url, bob, http=http).send(alice.agent_id, "m1", b"for alice")
        other_name = relay.url.replace("127.0.0.1", "localhost")
        as_alice = home.signed_in_at(other_name)
        assert as_alice is not home and home.signed_in_at(other_name) is as_alice
        with pytest.raises(RelayAuthError, match="public URL"):
            await as_alice.fetch()
        with pytest.raises(RelayAuthError, match="public URL"):
            await home.at(other_name).fetch_cards([bob.agent_id])
        elsewhere = [r for r in sent if r.url.host == "localhost"]
        assert [r for r in elsewhere if r.url.path == "/v1/auth/session"]  # tried, refused
        assert not [r for r in elsewhere if "authorization" in r.headers]  # no session
        assert [d.message_id for d in await home.fetch()] == ["m1"]  # nothing taken
        await home.close()  # leaves the shared HTTP client open
        assert not http.is_closed
