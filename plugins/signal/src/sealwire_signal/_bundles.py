"""Peers' prekey bundles, for the first message to a peer: fetched at the peer's home
relay (the one its card's mailbox address names), checked against its card (the relay
vouches for nothing), and fetched once for the seals that need the same bundle at the
same time (calls in flight to a new peer): each fetch takes one of the peer's one-time
prekeys, and the relay limits fetches of one agent's prekeys."""

from __future__ import annotations

import asyncio
import functools
import hmac

from sealwire.errors import TrustError
from sealwire.identity import VerifiedCard
from sealwire.relay import RelayPort, peer_directory
from sealwire_signal._crypto import KEY_LEN
from sealwire_signal._errors import EnvelopeDecodeError
from sealwire_signal._prekeys import POOL_KEM, POOL_X25519
from sealwire_signal._wire import decode_bundle, decode_kem_blob
from sealwire_signal._x3dh import OneTimePrekey, VerifiedBundle

__all__ = ["PeerBundles"]


class PeerBundles:
    """The bundles of peers over the binding named ``binding``."""

    def __init__(self, binding: str) -> None:
        self._binding = binding
        self._fetching: dict[tuple[str, bytes], asyncio.Future[VerifiedBundle]] = {}

    async def fetch(self, relay: RelayPort, peer: VerifiedCard) -> VerifiedBundle:
        """``peer``'s bundle, verified against its card; one fetch for every caller asking
        for the same peer and agreement key meanwhile (a caller cancelled leaves it to
        the others)."""
        key = (peer.agent_id, peer.identity.agreement_key.public_bytes_raw())
        fetch = self._fetching.get(key)
        if fetch is None:
            fetch = asyncio.ensure_future(self._fetch(relay, peer))
            self._fetching[key] = fetch
            fetch.add_done_callback(functools.partial(self._fetched, key))
        return await asyncio.shield(fetch)

    def _fetched(self, key: tuple[str, bytes], fetch: asyncio.Future[VerifiedBundle]) -> None:
        if self._fetching.get(key) is fetch:
            del self._fetching[key]
        if not fetch.cancelled():
            fetch.exception()  # retrieved here too: every caller may have been cancelled

    async def _fetch(self, relay: RelayPort, peer: VerifiedCard) -> VerifiedBundle:
        directory = peer_directory(relay, peer, self._binding)
        fetched = await directory.fetch_prekeys(peer.agent_id, self._binding)
        bundle = decode_bundle(fetched.bundle)
        expected = peer.identity.agreement_key.public_bytes_raw()
        if not hmac.compare_digest(expected, bundle.identity_key):
            raise TrustError("the prekey bundle's identity key is not the card's")
        one_time = fetched.one_time.get(POOL_X25519)
        kem = fetched.one_time.get(POOL_KEM)
        return bundle.verify(
            peer.identity.signing_key,
            mldsa_key=peer.identity.mldsa_key,
            one_time=None if one_time is None else OneTimePrekey(
                _pool_id(one_time[0]), _x25519_blob(one_time[1])
            ),
            one_time_kem=None if kem is None else decode_kem_blob(_pool_id(kem[0]), kem[1]),
        )  # fmt: skip


def _pool_id(text: str) -> int:
    if not text.isdigit() or len(text) > 10 or int(text) > 0xFFFF_FFFF:
        raise EnvelopeDecodeError("one-time prekey id is not a uint32", field="one_time.id")
    return int(text)


def _x25519_blob(blob: bytes) -> bytes:
    if len(blob) != KEY_LEN:
        raise EnvelopeDecodeError("one-time prekey is not 32 bytes", field="one_time.key")
    return blob
