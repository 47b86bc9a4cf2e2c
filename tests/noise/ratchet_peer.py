"""An agent process with the in-session ratchet, for the SIGKILL test (run by
test_ratchet_process.py, not by pytest).

Usage: ``python ratchet_peer.py DIR PORT`` with the store key in
$SEALWIRE_STORE_KEY. It keeps its identity in DIR/identity.key and its state in
DIR/peer.db (SQLite), writes its signed card to DIR/card.json, answers Noise
sessions on 127.0.0.1:PORT and prints, flushed: ``ready``; ``restart <how>``
for each session; ``got <frame>`` for each frame handed on (after the ratchet
state was committed), then answers ``ack:<frame>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path

from sealwire.agent._card import build_card
from sealwire.binding import BindingContext, ChannelClosed, Negotiation
from sealwire.identity import Identity, TrustMode, TrustStore, verify_card
from sealwire.store import SqliteStore, StoreKey
from sealwire.transport import FrameStream, serve
from sealwire_noise import RatchetChannel
from sealwire_noise._binding import NoiseBinding

OPTIONS = {"per_message_forward_secrecy": True}
URI = NoiseBinding.info.uri
NEGOTIATION = Negotiation(chosen=URI, initiator_offers=(URI,), responder_offers=(URI,))


def identity(directory: Path) -> Identity:
    path = directory / "identity.key"
    if path.exists():
        return Identity.from_storage_bytes(path.read_bytes())
    fresh = Identity.generate()
    path.write_bytes(fresh.private_bytes_for_storage())
    return fresh


async def main() -> None:
    directory, port = Path(sys.argv[1]), int(sys.argv[2])
    me = identity(directory)
    raw_card = build_card(
        me, name="peer", description="ratchet peer", version="0", bindings=[NoiseBinding],
        listen_urls=(f"tcp://127.0.0.1:{port}",), relay_address=None,
        options={"noise": OPTIONS},
    )  # fmt: skip
    (directory / "card.json").write_text(json.dumps(dict(raw_card)))
    store = SqliteStore.open(directory / "peer.db", StoreKey.from_env())
    binding = NoiseBinding(
        BindingContext(
            identity=me,
            card=verify_card(raw_card),
            store=store,
            trust=TrustStore(store, TrustMode.TOFU),
            options=OPTIONS,
        )
    )

    async def handle(stream: FrameStream) -> None:
        channel = await binding.respond(stream, NEGOTIATION)
        assert isinstance(channel, RatchetChannel)
        print(f"restart {channel.restart.value}", flush=True)
        with contextlib.suppress(ChannelClosed):
            while True:
                frame = await channel.receive()
                print(f"got {frame.decode()}", flush=True)
                await channel.send(b"ack:" + frame)
        await channel.close()

    async with await serve(f"tcp://127.0.0.1:{port}", handle):
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
