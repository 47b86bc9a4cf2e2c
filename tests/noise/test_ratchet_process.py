"""The in-session ratchet across a SIGKILL of a real agent process (issue 22 item 2).

``ratchet_peer.py`` runs a Noise responder with the ratchet and a SQLite store.
We talk to it over loopback TCP, kill it with SIGKILL in the middle of a burst,
start it again on the same files, and reconnect: both sides resume the same
ratchet (no restart), no frame is handed on twice, and the conversation goes on.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from ports import free_port
from waiting import until

from sealwire.agent._card import build_card
from sealwire.binding import BindingContext, ChannelClosed, Negotiation
from sealwire.identity import Identity, TrustMode, TrustStore, verify_card
from sealwire.store import MemoryStore, StoreKey
from sealwire.transport import connect
from sealwire_noise import RatchetChannel, Restart
from sealwire_noise._binding import NoiseBinding

PEER = Path(__file__).with_name("ratchet_peer.py")
OPTIONS = {"per_message_forward_secrecy": True}
URI = NoiseBinding.info.uri
NEGOTIATION = Negotiation(chosen=URI, initiator_offers=(URI,), responder_offers=(URI,))

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")


class Peer:
    """The peer process and the lines it printed (read on a thread: stdout blocks)."""

    def __init__(self, directory: Path, port: int, key: StoreKey) -> None:
        env = {**os.environ, "SEALWIRE_STORE_KEY": key.export_for_file().decode().strip()}
        self.proc = subprocess.Popen(
            [sys.executable, str(PEER), str(directory), str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._reader.join(timeout=30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def got(self) -> list[str]:
        return [line.removeprefix("got ") for line in self.lines if line.startswith("got ")]


def alice_binding() -> NoiseBinding:
    me = Identity.generate()
    card = build_card(
        me, name="alice", description="ratchet test", version="0", bindings=[NoiseBinding],
        listen_urls=("tcp://127.0.0.1:1",), relay_address=None, options={"noise": OPTIONS},
    )  # fmt: skip
    store = MemoryStore()
    return NoiseBinding(
        BindingContext(
            identity=me,
            card=verify_card(card),
            store=store,
            trust=TrustStore(store, TrustMode.TOFU),
            options=OPTIONS,
        )
    )


async def test_a_killed_peer_resumes_the_ratchet_and_hands_nothing_on_twice(
    tmp_path: Path,
) -> None:
    key, port = StoreKey.generate(), free_port()
    alice = alice_binding()
    peer = Peer(tmp_path, port, key)
    try:
        await until(lambda: "ready" in peer.lines, "the peer to listen")
        peer_card = verify_card(json.loads((tmp_path / "card.json").read_text()))
        url = f"tcp://127.0.0.1:{port}"

        channel = await alice.initiate(await connect(url), peer_card, NEGOTIATION)
        assert isinstance(channel, RatchetChannel) and channel.restart is Restart.NEW
        for n in range(4):
            await channel.send(b"m%d" % n)
            assert await channel.receive() == b"ack:m%d" % n
        for n in range(4, 40):  # a burst, killed part-way through
            await channel.send(b"m%d" % n)
        await until(lambda: "got m8" in peer.lines, "the peer to be mid-burst")
        peer.kill()
        with contextlib.suppress(ChannelClosed):
            while True:
                await channel.receive()
        await channel.close()
        before = peer.got()

        peer = Peer(tmp_path, port, key)
        await until(lambda: "ready" in peer.lines, "the restarted peer to listen")
        channel = await alice.initiate(await connect(url), peer_card, NEGOTIATION)
        assert isinstance(channel, RatchetChannel)
        assert channel.restart is Restart.RESUMED
        await until(lambda: "restart resumed" in peer.lines, "the peer to resume")
        for n in range(5):
            await channel.send(b"after%d" % n)
            assert await channel.receive() == b"ack:after%d" % n
        await channel.close()
        after = peer.got()
    finally:
        peer.kill()

    assert before[:9] == [f"m{n}" for n in range(9)]
    handed_on = before + after
    assert len(handed_on) == len(set(handed_on))  # nothing twice
    assert after == [f"after{n}" for n in range(5)]
    assert not any(line.startswith("restart ") and line != "restart resumed" for line in peer.lines)
