"""The relay serves HTTPS and WSS itself (issue 14 item 6.1).

``[relay] tls_certificate`` and ``tls_key`` make the relay serve TLS and its
default public URL ``https://``; a client trusting the certificate (its
``ca`` file: a CA, or the relay's own pinned certificate) makes requests and
holds a WSS subscription; a client that does not trust it is refused with a
typed error, before anything is signed or sent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from ports import free_port
from tls_certs import make_certificate

from sealwire.config import AgentConfig, init_home, open_agent
from sealwire.errors import ConfigurationError
from sealwire.identity import Identity
from sealwire.relay import RelayCertificateError, RelayClient, fetch_descriptor
from sealwire.relay._transport import tls_context
from sealwire_relay import RelayConfig, running_relay

TIMEOUT = 20


def _config(tmp_path: Path, cert: Path, key: Path) -> RelayConfig:
    return RelayConfig.from_mapping(
        {
            "port": free_port(),
            "tls_certificate": cert.name,
            "tls_key": key.name,
            "sqlite": {"path": "relay.sqlite3"},
        },
        base=tmp_path,
    )


async def test_relay_over_tls_serves_requests_and_wss_to_a_trusting_client(
    tmp_path: Path,
) -> None:
    cert, key = make_certificate(tmp_path)
    config = _config(tmp_path, cert, key)
    assert config.tls and config.url.startswith("https://127.0.0.1:")
    async with running_relay(config) as relay:
        assert relay.url.startswith("https://")
        async with (
            RelayClient(relay.url, Identity.generate(), ca=cert) as alice,
            RelayClient(relay.url, Identity.generate(), ca=cert) as bob,
        ):
            subscription = alice.subscribe()
            try:
                await bob.send(alice.agent_id, "m1", b"over tls")
                delivery = await asyncio.wait_for(anext(subscription), TIMEOUT)
            finally:
                await subscription.aclose()
            assert (delivery.message_id, delivery.envelope) == ("m1", b"over tls")
            assert await alice.count_key_packages() == 0
            assert await bob.open_stream()  # the streamed delivery socket, over WSS
        # What sealwire init --relay --relay-ca reads: the signed descriptor, over HTTPS.
        descriptor = await fetch_descriptor(relay.url, ca=cert)
        assert (descriptor.relay_id, descriptor.url) == (relay.relay_id, relay.url)
        with pytest.raises(RelayCertificateError):
            await fetch_descriptor(relay.url)


async def test_a_client_that_does_not_trust_the_certificate_is_refused(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    other, _ = make_certificate(tmp_path, "other")
    async with running_relay(_config(tmp_path, cert, key)) as relay:
        for ca in (None, other):  # the system store; another certificate pinned
            async with RelayClient(relay.url, Identity.generate(), ca=ca) as client:
                with pytest.raises(RelayCertificateError, match="not trusted"):
                    await client.count_key_packages()


def test_certificate_and_key_go_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="both or neither"):
        RelayConfig.from_mapping({"tls_certificate": "cert.pem"}, base=tmp_path)


async def test_an_unreadable_certificate_is_a_configuration_error(tmp_path: Path) -> None:
    config = _config(tmp_path, tmp_path / "missing.pem", tmp_path / "missing.key")
    with pytest.raises(ConfigurationError, match="TLS certificate"):
        async with running_relay(config):
            pass


async def test_an_agent_home_pins_a_tls_relay_with_its_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``[agent] relay_ca`` (relative to the home) is what the agent's client trusts."""
    monkeypatch.delenv("SEALWIRE_STORE_KEY", raising=False)
    cert, key = make_certificate(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    (home / "relay.pem").write_bytes(cert.read_bytes())
    async with running_relay(_config(tmp_path, cert, key)) as relay:
        init_home(home, name="a", relay=relay.url, relay_id=relay.relay_id, relay_ca="relay.pem")
        config = AgentConfig.from_toml((home / "sealwire.toml").read_text())
        assert (config.relay_id, config.relay_ca) == (relay.relay_id, "relay.pem")
        agent = open_agent(home)
        try:
            assert agent.relay is not None
            assert await agent.relay.count_key_packages() == 0
        finally:
            await agent.relay.close()
            agent.store.close()


async def test_other_relays_are_checked_against_the_system_store_not_our_relay_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent pinning its own relay's certificate still looks peers up at their
    relays, whose certificates chain to the system store (here: SSL_CERT_FILE)."""
    home_cert, home_key = make_certificate(tmp_path, "home")
    (tmp_path / "peer").mkdir()
    peer_cert, peer_key = make_certificate(tmp_path / "peer", "peer")
    monkeypatch.setenv("SSL_CERT_FILE", str(peer_cert))  # the "system store"
    tls_context.cache_clear()
    try:
        async with (
            running_relay(_config(tmp_path, home_cert, home_key)) as home,
            running_relay(_config(tmp_path / "peer", peer_cert, peer_key)) as peer,
            RelayClient(home.url, Identity.generate(), ca=home_cert) as client,
        ):
            assert await client.count_key_packages() == 0
            assert await client.at(peer.url).fetch_cards([client.agent_id]) == {}
    finally:
        tls_context.cache_clear()
