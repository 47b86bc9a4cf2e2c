"""DTLS binding benchmark: handshakes/s and messages/s (64 B, 1 KiB) beside Noise over UDP.

Run, pinned to one core: ``taskset -c 0 uv run python benchmarks/dtls.py [--seconds 2.0]``

One process, one event loop, both ends of every session on loopback UDP
through core's carrier (``serve_datagram`` / ``connect_datagram``), each
binding's own ``initiate_datagram`` / ``respond_datagram``: what two agents
pay, minus core's plaintext hello (the same for both bindings).

* handshakes/s: a new UDP endpoint, the full handshake (DTLS: cookie exchange,
  ECDHE + certificates both ways, the card exchange with the exporter;
  Noise: IK, cards in the payloads), both channels closed;
* messages/s: frames of 64 B and 1 KiB one way (responder to initiator) on an
  established channel, in
  bursts of :data:`BURST` (sent, then all received), so no datagram overflows
  the receive queue.

Rates are per second of this process's CPU time (``time.process_time``:
user and system, so the kernel's loopback work counts), not wall time:
another process on a shared machine then does not steal slices from one
figure and not its peer. Noise and DTLS alternate in :data:`ROUNDS` slices,
the best slice of each kept; the ratio DTLS / Noise is printed beside each
pair.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sealwire.agent._card import build_card
from sealwire.binding import (
    BindingContext,
    ChannelClosed,
    Negotiation,
    SecureChannel,
    SessionBinding,
)
from sealwire.identity import Identity, TrustMode, TrustStore, verify_card
from sealwire.store import MemoryStore
from sealwire.transport import DatagramEndpoint, connect_datagram, serve_datagram
from sealwire_noise.plugin import NoiseBinding
from sealwire_tls._dtls_binding import DtlsBinding

ROUNDS = 5
"""Alternating slices per figure: enough for one quiet slice on a shared machine."""
BURST = 64
"""Frames in flight one way: well under the UDP endpoint's 256-datagram queue."""
BURST_TIMEOUT = 10.0
"""Seconds a burst may take before the run fails (loopback loses nothing at this rate)."""
SIZES = (64, 1024)
CLOSE_WAIT = 5.0
"""Seconds a responder waits for the initiator's close (one loopback datagram)."""


def make(cls: type[SessionBinding]) -> SessionBinding:
    identity = Identity.generate()
    card = verify_card(
        build_card(
            identity,
            name="bench",
            description="benchmark agent",
            version="0",
            bindings=[cls],
            listen_urls=["udp://127.0.0.1:1"],
            relay_address=None,
            options={},
        )
    )
    store = MemoryStore()
    return cls(
        BindingContext(
            identity=identity, card=card, store=store, trust=TrustStore(store, TrustMode.TOFU)
        )
    )


def negotiation(a: SessionBinding, b: SessionBinding) -> Negotiation:
    return Negotiation(
        chosen=b.info.uri,
        initiator_offers=tuple(o.uri for o in a.context.card.offers),
        responder_offers=tuple(o.uri for o in b.context.card.offers),
    )


class Pair:
    """A responder listening on loopback UDP and an initiator that calls it."""

    def __init__(self, cls: type[SessionBinding]) -> None:
        self.alice, self.bob = make(cls), make(cls)
        self.neg = negotiation(self.alice, self.bob)
        self.accepted: asyncio.Queue[tuple[SecureChannel, asyncio.Event]] = asyncio.Queue()
        self.listener: Any = None

    async def start(self) -> None:
        async def serve_one(endpoint: DatagramEndpoint) -> None:
            channel = await self.bob.respond_datagram(endpoint, self.neg)
            done = asyncio.Event()
            self.accepted.put_nowait((channel, done))
            await done.wait()  # the initiator closed: read its close before the handler ends
            with contextlib.suppress(ChannelClosed, TimeoutError):
                await asyncio.wait_for(channel.receive(), CLOSE_WAIT)

        self.listener = await serve_datagram("udp://127.0.0.1:0", serve_one)

    async def connect(self) -> tuple[SecureChannel, SecureChannel, asyncio.Event]:
        endpoint = await connect_datagram(self.listener.url)
        channel = await self.alice.initiate_datagram(endpoint, self.bob.context.card, self.neg)
        responder, done = await self.accepted.get()
        return channel, responder, done

    async def handshake(self) -> None:
        channel, _, done = await self.connect()
        await channel.close()
        done.set()

    async def close(self) -> None:
        await self.listener.close()


async def rate(fn: Callable[[], Awaitable[int]], seconds: float) -> float:
    """Units of work per CPU second over about ``seconds`` of CPU (after a warm-up)."""
    await fn()
    done, start = 0, time.process_time()
    while True:
        done += await fn()
        now = time.process_time()
        if now - start >= seconds:
            return done / (now - start)


async def interleaved(
    actions: dict[str, Callable[[], Awaitable[int]]], seconds: float
) -> dict[str, float]:
    best = dict.fromkeys(actions, 0.0)
    for _ in range(ROUNDS):
        for name, fn in actions.items():
            best[name] = max(best[name], await rate(fn, seconds / ROUNDS))
    return best


def burst(
    sender: SecureChannel, receiver: SecureChannel, size: int
) -> Callable[[], Awaitable[int]]:
    frame = b"x" * size

    async def run() -> int:
        for _ in range(BURST):
            await sender.send(frame)
        async with asyncio.timeout(BURST_TIMEOUT):  # a lost datagram must not hang the run
            for _ in range(BURST):
                await receiver.receive()
        return BURST

    return run


async def main(seconds: float) -> None:
    pairs = {"noise": Pair(NoiseBinding), "dtls": Pair(DtlsBinding)}
    for pair in pairs.values():
        await pair.start()
    try:

        def handshakes(pair: Pair) -> Callable[[], Awaitable[int]]:
            async def run() -> int:
                await pair.handshake()
                return 1

            return run

        figures = await interleaved({n: handshakes(p) for n, p in pairs.items()}, seconds)
        print(f"{'figure':<28}{'noise/UDP':>12}{'dtls/UDP':>12}{'dtls/noise':>12}")
        noise, dtls = figures["noise"], figures["dtls"]
        print(f"{'handshakes/s':<28}{noise:>12,.0f}{dtls:>12,.0f}{dtls / noise:>12.2f}")
        channels = {n: await p.connect() for n, p in pairs.items()}
        dtls_channel = channels["dtls"][0]
        for size in SIZES:
            actions = {n: burst(b, a, size) for n, (a, b, _) in channels.items()}
            figures = await interleaved(actions, seconds)
            noise, dtls = figures["noise"], figures["dtls"]
            label = f"messages/s, {size} B"
            print(f"{label:<28}{noise:>12,.0f}{dtls:>12,.0f}{dtls / noise:>12.2f}")
        print(
            f"(DTLS suite: {getattr(dtls_channel, 'cipher', '?')}; Noise: IK, "
            "ChaChaPoly_SHA256; CPU seconds of this process, both ends)"
        )
        for a, _, done in channels.values():
            await a.close()
            done.set()
    finally:
        for pair in pairs.values():
            await pair.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="CPU seconds per figure")
    asyncio.run(main(parser.parse_args().seconds))
