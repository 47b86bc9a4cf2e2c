"""The in-session Double Ratchet (issue 22) beside plain Noise transport.

Run, pinned to one core: ``taskset -c 0 uv run python benchmarks/noise_ratchet.py [--seconds 0.5]``

Two bindings, both in this process, talk over an in-memory frame stream (so
the figures are the protocol's cost, not a socket's): a plain Noise channel
(IK, ChaChaPoly_SHA256) and the same session with
``per_message_forward_secrecy``, its ratchet committed to a memory store and,
in a third column, to an encrypted SQLite store on disk (the default agent
store: one transaction per message sent or received).

* one way: one side sends, the other receives; messages/s. The sender's
  channel is drained in the background, as an agent's read loop does, so the
  receiver's STEP messages come back (a DH step every 256 messages).
* ping-pong: a frame there and back; round trips/s, and the latency one round
  trip adds over plain Noise (µs).

Each figure is the best of ROUNDS alternating slices of about ``--seconds``
wall time (wall, not CPU: a store's fsync is part of the cost); ratios are
against plain Noise measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sealwire.agent._card import build_card
from sealwire.binding import BindingContext, ChannelClosed, Negotiation
from sealwire.identity import Identity, TrustMode, TrustStore, verify_card
from sealwire.store import MemoryStore, SqliteStore, StateStore, StoreKey
from sealwire.transport import memory_pair
from sealwire_noise._binding import NoiseBinding

ROUNDS = 5
"""Alternating slices per figure: enough for one quiet slice on a shared machine."""
BATCH = 64
"""Messages per timed step: amortises the clock read without hiding a slow message."""
SIZES = (64, 1024)
URI = NoiseBinding.info.uri
NEGOTIATION = Negotiation(chosen=URI, initiator_offers=(URI,), responder_offers=(URI,))


def binding(options: dict[str, Any], store: StateStore) -> NoiseBinding:
    me = Identity.generate()
    card = build_card(
        me, name="bench", description="bench", version="0", bindings=[NoiseBinding],
        listen_urls=("tcp://127.0.0.1:1",), relay_address=None, options={"noise": options},
    )  # fmt: skip
    return NoiseBinding(
        BindingContext(
            identity=me,
            card=verify_card(card),
            store=store,
            trust=TrustStore(store, TrustMode.TOFU),
            options=options,
        )
    )


async def pair(options: dict[str, Any], stores: tuple[StateStore, StateStore]) -> tuple[Any, Any]:
    a, b = binding(options, stores[0]), binding(options, stores[1])
    s1, s2 = memory_pair()
    return await asyncio.gather(
        a.initiate(s1, b.context.card, NEGOTIATION), b.respond(s2, NEGOTIATION)
    )


async def drain(channel: Any) -> None:
    with contextlib.suppress(ChannelClosed, asyncio.CancelledError):
        while True:
            await channel.receive()


async def one_way(sender: Any, receiver: Any, payload: bytes) -> None:
    for _ in range(BATCH):
        await sender.send(payload)
    for _ in range(BATCH):
        await receiver.receive()


async def ping_pong(a: Any, b: Any, payload: bytes) -> None:
    for _ in range(BATCH):
        await a.send(payload)
        await b.send(await b.receive())
        await a.receive()


async def rate(step: Callable[[], Awaitable[None]], seconds: float) -> float:
    """Messages (or round trips) per wall second over about ``seconds``."""
    await step()  # warm-up
    done, start = 0, time.perf_counter()
    while True:
        await step()
        done += BATCH
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


async def main(seconds: float) -> None:
    directory = Path(tempfile.mkdtemp(prefix="noise-ratchet-bench-"))
    key = StoreKey.generate()
    sqlite = (
        SqliteStore.open(directory / "a.db", key),
        SqliteStore.open(directory / "b.db", key),
    )
    setups = {
        "noise": ({}, (MemoryStore(), MemoryStore())),
        "ratchet": ({"per_message_forward_secrecy": True}, (MemoryStore(), MemoryStore())),
        "ratchet+sqlite": ({"per_message_forward_secrecy": True}, sqlite),
    }
    channels = {name: await pair(opts, stores) for name, (opts, stores) in setups.items()}
    print(f"in-session ratchet vs plain Noise, best of {ROUNDS} slices of {seconds:.2f} s\n")
    header = f"{'':24}" + "".join(f"{name:>18}" for name in channels)
    for mode in ("one way", "ping-pong"):
        print(f"{mode}: {'messages/s' if mode == 'one way' else 'round trips/s'}")
        print(header + f"{'ratchet/noise':>16}{'+sqlite/noise':>16}")
        for size in SIZES:
            payload = b"x" * size
            best = dict.fromkeys(channels, 0.0)
            for _ in range(ROUNDS):
                for name, (a, b) in channels.items():
                    if mode == "one way":
                        drainer = asyncio.create_task(drain(a))
                        got = await rate(lambda a=a, b=b, p=payload: one_way(a, b, p), seconds)
                        drainer.cancel()
                        await asyncio.gather(drainer, return_exceptions=True)
                    else:
                        got = await rate(lambda a=a, b=b, p=payload: ping_pong(a, b, p), seconds)
                    best[name] = max(best[name], got)
            row = f"  {size:>5} B{'':15}" + "".join(f"{best[n]:>18,.0f}" for n in channels)
            row += f"{best['ratchet'] / best['noise']:>16.2f}"
            row += f"{best['ratchet+sqlite'] / best['noise']:>16.2f}"
            print(row)
            if mode == "ping-pong":
                added = {n: 1e6 / best[n] - 1e6 / best["noise"] for n in channels if n != "noise"}
                print(
                    f"  {'':7}added latency per round trip: "
                    + ", ".join(f"{n} +{us:,.1f} µs" for n, us in added.items())
                )
        print()
    for a, b in channels.values():
        await a.close()
        await b.close()
    for store in sqlite:
        store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="wall seconds per slice")
    asyncio.run(main(parser.parse_args().seconds))
