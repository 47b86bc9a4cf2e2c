"""Transport phase (Noise rev 34 §5.1, §11.3 rekey, §11.4 out-of-order transport).

* :class:`TransportState` - for reliable, ordered carriers (TCP, WebSocket):
  implicit nonces, optional count-based rekey in step on both sides.
* :class:`StatelessTransportState` - the caller supplies each nonce (snow's
  ``StatelessTransportState``).
* :class:`DatagramTransport` - for UDP: every packet carries its 64-bit
  counter in clear (the nonce), a sliding :class:`ReplayWindow` accepts each
  counter at most once (WireGuard, RFC 6479), and keys are rekeyed per epoch
  of ``rekey_after`` counters so loss and reordering never desynchronise them.

A failed decryption never changes state (nonces, window, keys).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag

from sealwire_noise._errors import (
    NoiseAuthenticationError,
    NoiseConfigurationError,
    NoiseDecodeError,
    NoiseNonceExhausted,
    NoiseStateError,
    ReplayedPacketError,
)
from sealwire_noise._symmetric import MAX_NONCE, TAG_LEN, CipherState

__all__ = [
    "COUNTER_LEN",
    "MAX_EPOCH_SKIP",
    "MAX_MESSAGE_LEN",
    "MAX_PAYLOAD_LEN",
    "REPLAY_WINDOW",
    "DatagramTransport",
    "ReplayWindow",
    "StatelessTransportState",
    "TransportState",
]

MAX_MESSAGE_LEN = 65535
"""§3: a Noise message is at most 65535 bytes."""
MAX_PAYLOAD_LEN = MAX_MESSAGE_LEN - TAG_LEN
"""Largest plaintext one transport message can carry."""
COUNTER_LEN = 8
"""Bytes of explicit big-endian counter in front of each datagram."""
REPLAY_WINDOW = 2048
"""Counters remembered behind the highest one (WireGuard's window): reordering
deeper than this is treated as loss; the bitmap stays 256 bytes."""
MAX_EPOCH_SKIP = 4
"""Epochs a datagram may jump ahead of the receiver: bounds the rekeys an
attacker can make us compute before a tag is checked."""


def _check_len(message: bytes) -> None:
    if len(message) > MAX_MESSAGE_LEN:
        raise NoiseDecodeError("message exceeds 65535 bytes", field="noise.message")


class TransportState:
    """The two CipherStates of a finished handshake (§5.3 Split).

    ``rekey_after`` (messages) rekeys a direction after every that many
    messages; both sides count the same messages, so they rekey in step.
    """

    def __init__(
        self,
        *,
        send: CipherState | None,
        recv: CipherState | None,
        handshake_hash: bytes,
        remote_static: bytes | None,
        rekey_after: int | None = None,
    ) -> None:
        if rekey_after is not None and rekey_after <= 0:
            raise NoiseConfigurationError("rekey_after must be positive")
        self._send, self._recv = send, recv
        self.handshake_hash = handshake_hash
        self.remote_static = remote_static
        self._rekey_after = rekey_after
        self._send_limit = self._limit(send)
        self._recv_limit = self._limit(recv)

    def __repr__(self) -> str:
        return f"<TransportState send_n={self.send_nonce} recv_n={self.receive_nonce}>"

    @property
    def rekey_after(self) -> int | None:
        return self._rekey_after

    @property
    def send_nonce(self) -> int | None:
        return None if self._send is None else self._send.n

    @property
    def receive_nonce(self) -> int | None:
        return None if self._recv is None else self._recv.n

    def _limit(self, cs: CipherState | None) -> int:
        """The nonce up to which (excluded) a message needs no more than the AEAD call:
        the next count-based rekey, or the reserved last nonce; 0 when there is no key."""
        if cs is None or not cs.has_key():
            return 0
        every = self._rekey_after
        return MAX_NONCE if every is None else min(MAX_NONCE, (cs.n // every + 1) * every)

    def encrypt(self, payload: bytes, ad: bytes = b"") -> bytes:
        """One transport message (§5.1 EncryptWithAd) of at most 65535 bytes.

        The per-message path of a session: a message whose next nonce is below
        the limit (no rekey due, nonce space left) costs one check and the AEAD
        call on the CipherState's AEAD object; the others take the checked path.
        """
        cs = self._send
        if cs is None or len(payload) > MAX_PAYLOAD_LEN or cs.n + 1 >= self._send_limit:
            return self._encrypt_checked(payload, ad)
        n = cs.n
        out = cs._aead.encrypt(cs._nonce(n), payload, ad or None)  # type: ignore[union-attr]
        cs.n = n + 1
        return out

    def _encrypt_checked(self, payload: bytes, ad: bytes) -> bytes:
        cs = self._send
        if cs is None:
            raise NoiseStateError("this side of a one-way pattern cannot send")
        if len(payload) > MAX_PAYLOAD_LEN:
            raise NoiseStateError(f"payload exceeds {MAX_PAYLOAD_LEN} bytes")
        out = cs.encrypt_with_ad(ad, payload)  # no key: plaintext; last nonce: raises
        if self._rekey_after and cs.n % self._rekey_after == 0:
            cs.rekey()
        self._send_limit = self._limit(cs)
        return out

    def decrypt(self, message: bytes, ad: bytes = b"") -> bytes:
        """The payload; a bad message raises and leaves the nonce unchanged."""
        cs = self._recv
        if (
            cs is None
            or not TAG_LEN <= len(message) <= MAX_MESSAGE_LEN
            or cs.n + 1 >= self._recv_limit
        ):
            return self._decrypt_checked(message, ad)
        n = cs.n
        try:
            out = cs._aead.decrypt(cs._nonce(n), message, ad or None)  # type: ignore[union-attr]
        except InvalidTag:
            raise NoiseAuthenticationError() from None
        cs.n = n + 1
        return out

    def _decrypt_checked(self, message: bytes, ad: bytes) -> bytes:
        cs = self._recv
        if cs is None:
            raise NoiseStateError("this side of a one-way pattern cannot receive")
        _check_len(message)
        out = cs.decrypt_with_ad(ad, message)  # the typed errors, or no key: plaintext
        if self._rekey_after and cs.n % self._rekey_after == 0:
            cs.rekey()
        self._recv_limit = self._limit(cs)
        return out

    def rekey_send(self) -> None:
        """§11.3 Rekey() of the sending key (the peer must call rekey_receive in step)."""
        if self._send is None:
            raise NoiseStateError("no sending key")
        self._send.rekey()

    def rekey_receive(self) -> None:
        if self._recv is None:
            raise NoiseStateError("no receiving key")
        self._recv.rekey()


class StatelessTransportState:
    """Transport with caller-supplied nonces (§11.4); no replay protection of its own."""

    def __init__(self, send: CipherState | None, recv: CipherState | None) -> None:
        self._send, self._recv = send, recv

    def __repr__(self) -> str:
        return "<StatelessTransportState>"

    def encrypt(self, nonce: int, payload: bytes, ad: bytes = b"") -> bytes:
        if self._send is None:
            raise NoiseStateError("no sending key")
        if not 0 <= nonce < MAX_NONCE:
            raise NoiseNonceExhausted("nonce out of range")
        if len(payload) > MAX_PAYLOAD_LEN:
            raise NoiseStateError(f"payload exceeds {MAX_PAYLOAD_LEN} bytes")
        return self._send.encrypt_at(nonce, ad, payload)

    def decrypt(self, nonce: int, message: bytes, ad: bytes = b"") -> bytes:
        if self._recv is None:
            raise NoiseStateError("no receiving key")
        if not 0 <= nonce < MAX_NONCE:
            raise NoiseDecodeError("nonce out of range", field="noise.nonce")
        _check_len(message)
        return self._recv.decrypt_at(nonce, ad, message)


class ReplayWindow:
    """A sliding window of accepted counters (RFC 6479 / WireGuard).

    :meth:`check` is pure; :meth:`mark` is called only after the packet
    authenticated, so forged packets cannot move the window.
    """

    __slots__ = ("_bits", "_top", "size")

    def __init__(self, size: int = REPLAY_WINDOW) -> None:
        self.size = size
        self._top = -1  # highest accepted counter
        self._bits = 0  # bit i set: counter top - i was accepted

    @property
    def highest(self) -> int:
        return self._top

    def check(self, counter: int) -> None:
        """Raise :class:`ReplayedPacketError` if ``counter`` is replayed or too old."""
        if counter > self._top:
            return
        back = self._top - counter
        if back >= self.size:
            raise ReplayedPacketError("packet counter is behind the replay window")
        if self._bits >> back & 1:
            raise ReplayedPacketError("packet counter was already accepted")

    def mark(self, counter: int) -> None:
        if counter > self._top:
            shift = counter - self._top
            self._bits = ((self._bits << shift) | 1) & ((1 << self.size) - 1)
            self._top = counter
        else:
            self._bits |= 1 << (self._top - counter)


class DatagramTransport:
    """Explicit-counter transport for lossy carriers (UDP).

    A packet is ``counter (8 bytes, big-endian) || ENCRYPT(k_epoch, counter, ad, payload)``
    where ``epoch = counter // rekey_after`` and ``k_epoch`` is ``k`` rekeyed
    (§11.3) ``epoch`` times. The receiver keeps the current and previous
    epoch's keys only, so old keys are erased (forward secrecy) while packets
    reordered across an epoch boundary still open.
    """

    def __init__(
        self,
        send: CipherState | None,
        recv: CipherState | None,
        *,
        rekey_after: int = 2**20,
        window: int = REPLAY_WINDOW,
    ) -> None:
        if rekey_after < window:
            raise NoiseConfigurationError("rekey_after must be at least the replay window")
        self.rekey_after = rekey_after
        self._send = send
        self._send_counter = 0
        self._recv: dict[int, CipherState] = {} if recv is None else {0: recv}
        self._window = ReplayWindow(window)

    def __repr__(self) -> str:
        return f"<DatagramTransport sent={self._send_counter} top={self._window.highest}>"

    @property
    def send_counter(self) -> int:
        return self._send_counter

    def encrypt(self, payload: bytes, ad: bytes = b"") -> bytes:
        if self._send is None:
            raise NoiseStateError("no sending key")
        counter = self._send_counter
        if counter >= MAX_NONCE - 1:
            raise NoiseNonceExhausted("datagram counter exhausted; start a new session")
        if len(payload) > MAX_PAYLOAD_LEN - COUNTER_LEN:
            raise NoiseStateError("payload too large for one datagram")
        out = counter.to_bytes(COUNTER_LEN, "big") + self._send.encrypt_at(counter, ad, payload)
        self._send_counter = counter + 1
        if self._send_counter % self.rekey_after == 0:
            self._send.rekey()
        return out

    def next_epoch(self) -> None:
        """Rekey the sending direction now (time-based §11.3 rekey): jump the counter
        to the next epoch boundary, which the receiver follows as if packets were lost.
        Packets of the old epoch still in flight may then fall behind the window."""
        if self._send is None:
            raise NoiseStateError("no sending key")
        boundary = (self._send_counter // self.rekey_after + 1) * self.rekey_after
        if boundary >= MAX_NONCE - 1:
            raise NoiseNonceExhausted("datagram counter exhausted; start a new session")
        self._send_counter = boundary
        self._send.rekey()

    def decrypt(self, packet: bytes, ad: bytes = b"") -> bytes:
        """The payload; tampered, truncated, replayed or stale packets raise typed
        errors and leave the window and keys unchanged."""
        if not self._recv:
            raise NoiseStateError("no receiving key")
        if len(packet) < COUNTER_LEN + TAG_LEN or len(packet) > MAX_MESSAGE_LEN:
            raise NoiseDecodeError("datagram has a bad length", field="noise.datagram")
        counter = int.from_bytes(packet[:COUNTER_LEN], "big")
        if counter >= MAX_NONCE:
            raise NoiseDecodeError("counter out of range", field="noise.counter")
        self._window.check(counter)
        cipher, keys = self._keys_for(counter // self.rekey_after)
        payload = cipher.decrypt_at(counter, ad, packet[COUNTER_LEN:])
        self._window.mark(counter)
        self._recv = keys  # the newest epoch and the one before it; older keys are erased
        return payload

    def _keys_for(self, epoch: int) -> tuple[CipherState, dict[int, CipherState]]:
        """The key of ``epoch`` and the receive keys to keep if it verifies; keys of
        a newer epoch are derived forward on copies, committed only after the tag."""
        current = max(self._recv)
        if epoch <= current:
            if epoch not in self._recv:
                raise ReplayedPacketError("packet from an erased key epoch")
            return self._recv[epoch], self._recv
        if epoch - current > MAX_EPOCH_SKIP:
            raise NoiseDecodeError("counter jumps too far ahead", field="noise.counter")
        previous = cipher = self._recv[current]
        for _ in range(epoch - current):
            previous, cipher = cipher, cipher.copy()
            cipher.rekey()
        return cipher, {epoch - 1: previous, epoch: cipher}
