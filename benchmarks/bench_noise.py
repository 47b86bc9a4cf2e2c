"""Noise benchmark: handshakes/s and transport MB/s, each beside its floor or peer.

Run, pinned to one core: ``taskset -c 0 uv run python benchmarks/bench_noise.py [--seconds 1.0]``

Every figure is measured in the same run as its floor, in alternating slices
(best slice of each kept), and timed in CPU time of this thread
(``time.thread_time``), not wall time: other processes on a shared machine
then slow both sides of a ratio alike (through caches and frequency) instead
of stealing whole slices from one of them. The ratio is the figure the issue
tracks.

Handshakes (complete in-process handshakes, both sides, ``os.urandom``
ephemerals) beside their floor, the cryptography a handshake cannot avoid
timed through ``cryptography`` on its own:

* an *X25519* is one ``exchange`` between key objects;
* a *key load* is ``X25519PrivateKey.from_private_bytes(raw)`` plus its raw
  public key: what each ephemeral key costs, and each static key loaded from
  bytes.

XX does 6 X25519 (ee, es, se on each side) and IK 8 (es, ss, ee, se on each
side). With static keys given as bytes (as ``noiseprotocol`` takes them,
shown as a peer) a handshake also loads 4 keys (2 ephemeral, 2 static):
floor = 1 / (X25519s + 4 key loads). With static key objects (what the
binding passes: the agent's agreement key), only the 2 ephemerals are loaded.

Beside XX, the same handshake written as nothing but its ``cryptography``
calls (16 hashes, 8 HKDF, 10 AEAD keys, 8 AEAD operations, 4 public-key
parses besides the X25519s and loads; no protocol logic): the most a Python
implementation on ``cryptography`` can reach against the floor.

Transport: encrypt then decrypt of one message (64 B, 1 KiB, 16 KiB, 64 KiB)
through ``TransportState`` beside the same AEAD through ``cryptography``
alone (one key object, a fixed nonce: no state at all). In brackets, the
least a stateful Python transport can do (a counter packed into each nonce,
one method call each way, no checks), against the same raw AEAD.
"""

from __future__ import annotations

import argparse
import os
import struct
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealwire_noise import HandshakeState, TransportState

try:
    from noise.connection import Keypair, NoiseConnection
except ImportError:  # noiseprotocol is a dev dependency; the peer column is then left out
    NoiseConnection = None

KIB = 1024
ROUNDS = 5
"""Alternating slices per figure: enough for one quiet slice on a shared machine."""

Action = Callable[[], object]


def rate(fn: Action, seconds: float) -> float:
    """Calls of ``fn`` per CPU second over about ``seconds`` of CPU (after a warm-up call)."""
    fn()
    calls, start = 0, time.thread_time()
    deadline = start + seconds
    while True:
        for _ in range(16):
            fn()
        calls += 16
        now = time.thread_time()
        if now >= deadline:
            return calls / (now - start)


def interleaved(actions: dict[str, Action], seconds: float) -> dict[str, float]:
    """Best rate of each action over ``ROUNDS`` alternating slices."""
    best = dict.fromkeys(actions, 0.0)
    for _ in range(ROUNDS):
        for name, fn in actions.items():
            best[name] = max(best[name], rate(fn, seconds / ROUNDS))
    return best


def x25519_exchange() -> Action:
    a, b = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    peer = b.public_key()
    return lambda: a.exchange(peer)


def key_load() -> Action:
    raw = os.urandom(32)
    return lambda: x25519.X25519PrivateKey.from_private_bytes(raw).public_key().public_bytes_raw()


def handshake(name: str, *, from_bytes: bool) -> Action:
    i_key, r_key = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    r_public = r_key.public_key().public_bytes_raw()
    i_static: x25519.X25519PrivateKey | bytes = i_key.private_bytes_raw() if from_bytes else i_key
    r_static: x25519.X25519PrivateKey | bytes = r_key.private_bytes_raw() if from_bytes else r_key
    ik = "_IK" in name

    def run() -> None:
        init = HandshakeState(
            name,
            initiator=True,
            random=os.urandom,
            static=i_static,
            remote_static=r_public if ik else None,
        )
        resp = HandshakeState(name, initiator=False, random=os.urandom, static=r_static)
        index = 0
        while not init.is_finished:
            sender, receiver = (init, resp) if index % 2 == 0 else (resp, init)
            receiver.read_message(sender.write_message(b""))
            index += 1
        init.into_transport()
        resp.into_transport()

    return run


def xx_calls_only() -> Action:
    """An XX handshake (both sides, static keys from bytes) written as nothing but its
    ``cryptography`` calls in a row: 4 key loads, 6 X25519, 4 public-key parses,
    16 hashes, 8 HKDF, 10 AEAD keys, 8 AEAD operations; no protocol logic, no checks.
    What any Noise implementation in Python on ``cryptography`` spends at least."""
    algorithm = hashes.SHA256()
    empty = hashes.Hash(algorithm)
    i_raw = x25519.X25519PrivateKey.generate().private_bytes_raw()
    r_raw = x25519.X25519PrivateKey.generate().private_bytes_raw()
    name = b"Noise_XX_25519_ChaChaPoly_SHA256"  # 32 bytes: h = name, no hash
    n0, n1 = bytes(12), (1 << 32).to_bytes(12, "little")
    load = x25519.X25519PrivateKey.from_private_bytes
    parse = x25519.X25519PublicKey.from_public_bytes
    aead = ChaCha20Poly1305

    def h(data: bytes) -> bytes:
        ctx = empty.copy()
        ctx.update(data)
        return ctx.finalize()

    def kdf(ck: bytes, ikm: bytes) -> tuple[bytes, bytes]:
        okm = HKDF(algorithm, 64, ck, b"").derive(ikm)
        return okm[:32], okm[32:]

    def run() -> bytes:
        i_s, r_s = load(i_raw), load(r_raw)
        i_s_pub = i_s.public_key().public_bytes_raw()
        r_s_pub = r_s.public_key().public_bytes_raw()
        ih, rh, ick, rck = h(name), h(name), name, name  # MixHash(prologue) on each side
        # -> e (payload: MixHash of the empty plaintext)
        i_e = load(os.urandom(32))
        i_e_pub = i_e.public_key().public_bytes_raw()
        ih = h(h(ih + i_e_pub))
        r_re = parse(i_e_pub)
        rh = h(h(rh + i_e_pub))
        # <- e, ee, s, es
        r_e = load(os.urandom(32))
        r_e_pub = r_e.public_key().public_bytes_raw()
        rh = h(rh + r_e_pub)
        rck, k = kdf(rck, r_e.exchange(r_re))
        c_s = aead(k).encrypt(n0, r_s_pub, rh)
        rh = h(rh + c_s)
        rck, k = kdf(rck, r_s.exchange(r_re))
        r_cipher = aead(k)
        c_p = r_cipher.encrypt(n0, b"", rh)
        rh = h(rh + c_p)
        i_re = parse(r_e_pub)
        ih = h(ih + r_e_pub)
        ick, k = kdf(ick, i_e.exchange(i_re))
        i_rs = parse(aead(k).decrypt(n0, c_s, ih))
        ih = h(ih + c_s)
        ick, k = kdf(ick, i_e.exchange(i_rs))
        i_cipher = aead(k)
        i_cipher.decrypt(n0, c_p, ih)
        ih = h(ih + c_p)
        # -> s, se
        c_s = i_cipher.encrypt(n1, i_s_pub, ih)
        ih = h(ih + c_s)
        ick, k = kdf(ick, i_s.exchange(i_re))
        c_p = aead(k).encrypt(n0, b"", ih)
        ih = h(ih + c_p)
        r_rs = parse(r_cipher.decrypt(n1, c_s, rh))
        rh = h(rh + c_s)
        rck, k = kdf(rck, r_e.exchange(r_rs))
        aead(k).decrypt(n0, c_p, rh)
        rh = h(rh + c_p)
        # Split() on each side
        for ck in (ick, rck):
            k1, k2 = kdf(ck, b"")
            aead(k1), aead(k2)
        assert ih == rh
        return ih

    return run


def peer_handshake(name: str) -> Action:
    """The same handshake through ``noiseprotocol`` (keys loaded from bytes, as it takes them)."""
    i_key, r_key = x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    i_raw, r_raw = i_key.private_bytes_raw(), r_key.private_bytes_raw()
    r_public = r_key.public_key().public_bytes_raw()
    ik = "_IK" in name

    def side(initiator: bool) -> NoiseConnection:
        conn = NoiseConnection.from_name(name.encode())
        conn.set_as_initiator() if initiator else conn.set_as_responder()
        conn.set_keypair_from_private_bytes(Keypair.STATIC, i_raw if initiator else r_raw)
        if ik and initiator:
            conn.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, r_public)
        conn.start_handshake()
        return conn

    def run() -> None:
        init, resp = side(True), side(False)
        index = 0
        while not init.handshake_finished:
            sender, receiver = (init, resp) if index % 2 == 0 else (resp, init)
            receiver.read_message(sender.write_message(b""))
            index += 1

    return run


def transport(suite: str) -> tuple[TransportState, TransportState]:
    name = f"Noise_NN_25519_{suite}"
    init = HandshakeState(name, initiator=True, random=os.urandom)
    resp = HandshakeState(name, initiator=False, random=os.urandom)
    resp.read_message(init.write_message())
    init.read_message(resp.write_message())
    return init.into_transport(), resp.into_transport()


def noise_round_trip(suite: str, size: int) -> Action:
    sender, receiver = transport(suite)
    payload = os.urandom(size)
    return lambda: receiver.decrypt(sender.encrypt(payload))


def raw_round_trip(aead: ChaCha20Poly1305 | AESGCM, size: int) -> Action:
    payload, nonce = os.urandom(size), bytes(12)
    return lambda: aead.decrypt(nonce, aead.encrypt(nonce, payload, b""), b"")


class _Counted:
    """The least state a transport can keep: a key object and a counter packed into
    each nonce. No checks, no rekey, no one-way sides: a reference, not a transport."""

    __slots__ = ("_aead", "_n", "_pack")

    def __init__(self, aead: ChaCha20Poly1305 | AESGCM) -> None:
        self._aead, self._n, self._pack = aead, 0, struct.Struct("<4xQ").pack

    def encrypt(self, payload: bytes) -> bytes:
        n = self._n
        self._n = n + 1
        return self._aead.encrypt(self._pack(n), payload, None)

    def decrypt(self, message: bytes) -> bytes:
        n = self._n
        self._n = n + 1
        return self._aead.decrypt(self._pack(n), message, None)


def counted_round_trip(aead: ChaCha20Poly1305 | AESGCM, size: int) -> Action:
    sender, receiver, payload = _Counted(aead), _Counted(aead), os.urandom(size)
    return lambda: receiver.decrypt(sender.encrypt(payload))


XX_CHACHA = "Noise_XX_25519_ChaChaPoly_SHA256"
HANDSHAKES = (
    # protocol name, X25519 exchanges of both sides together
    (XX_CHACHA, 6),
    ("Noise_IK_25519_ChaChaPoly_SHA256", 8),
)
OTHER_HANDSHAKES = (
    "Noise_XX_25519_AESGCM_BLAKE2s",
    "Noise_XXhfs_25519+MLKEM768_ChaChaPoly_SHA256",
)


def bench_handshakes(seconds: float) -> None:
    print("handshakes/s, both sides (floor = 1 / (X25519s + key loads), same run)")
    for name, exchanges in HANDSHAKES:
        actions = {
            "x": x25519_exchange(),
            "load": key_load(),
            "bytes": handshake(name, from_bytes=True),
            "objects": handshake(name, from_bytes=False),
        }
        if NoiseConnection is not None:
            actions["peer"] = peer_handshake(name)
        if name == XX_CHACHA:
            actions["calls"] = xx_calls_only()
        got = interleaved(actions, seconds)
        x, load = 1 / got["x"], 1 / got["load"]
        for label, loads in (("bytes", 4), ("objects", 2)):
            floor = 1 / (exchanges * x + loads * load)
            print(
                f"  {name:<34} static keys as {label:<7} {got[label]:>7,.0f} /s   "
                f"floor {floor:>7,.0f} /s ({exchanges} X25519 + {loads} key loads)   "
                f"ratio {got[label] / floor:4.2f}"
            )
        if "calls" in got:
            floor = 1 / (exchanges * x + 4 * load)
            print(
                f"  {'':34} its cryptography calls alone {got['calls']:>7,.0f} /s   "
                f"ratio to the floor {got['calls'] / floor:4.2f} (the ceiling for Python)"
            )
        if "peer" in got:
            print(
                f"  {'':34} noiseprotocol (bytes)    {got['peer']:>7,.0f} /s   "
                f"ours / peer {got['bytes'] / got['peer']:4.2f}"
            )
        print(f"  {'':34} (raw X25519 {got['x']:,.0f} /s, key load {got['load']:,.0f} /s)")
    for name in OTHER_HANDSHAKES:
        got = interleaved(
            {"x": x25519_exchange(), "hs": handshake(name, from_bytes=False)}, seconds
        )
        print(
            f"  {name:<45} {got['hs']:>7,.0f} /s   "
            f"one handshake = {got['x'] / got['hs']:4.1f} X25519 exchanges"
        )


def bench_transport(seconds: float) -> None:
    print("transport, one message encrypted then decrypted, beside the raw AEAD (same run)")
    key = os.urandom(32)
    for size, label in (
        (64, "64 B"),
        (KIB, "1 KiB"),
        (16 * KIB, "16 KiB"),
        (64 * KIB - 17, "64 KiB"),
    ):
        for suite, aead in (
            ("ChaChaPoly_SHA256", ChaCha20Poly1305(key)),
            ("AESGCM_SHA256", AESGCM(key)),
        ):
            got = interleaved(
                {
                    "raw": raw_round_trip(aead, size),
                    "noise": noise_round_trip(suite, size),
                    "counted": counted_round_trip(aead, size),
                },
                seconds,
            )
            ours, raw = got["noise"], got["raw"]
            print(
                f"  {label:>6} {suite.split('_')[0]:<10} noise enc+dec "
                f"{ours * size / 1e6:>7,.0f} MB/s   raw AEAD enc+dec {raw * size / 1e6:>7,.0f} MB/s"
                f"   ratio {ours / raw:4.2f}   (key + counter alone: {got['counted'] / raw:4.2f})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per figure")
    parser.add_argument(
        "--only", choices=("handshakes", "transport"), help="run one half of the benchmark"
    )
    args = parser.parse_args()
    if args.only != "transport":
        bench_handshakes(args.seconds)
        print()
    if args.only != "handshakes":
        bench_transport(args.seconds)


if __name__ == "__main__":
    main()
