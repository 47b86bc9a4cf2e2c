"""A secure channel whose frames run through the in-session Double Ratchet.

:class:`RatchetChannel` wraps a finished Noise channel (stream or datagram):
each A2A frame becomes one ratchet message (:mod:`sealwire_noise._ratchet`),
carried as one frame of the Noise channel, so it is encrypted twice: by the
ratchet's per-message key, then by the Noise transport.

Order of effects, which makes a crash lose or replay nothing:

* send: ratchet step -> commit the new ratchet -> send the message;
* receive: open -> commit the new ratchet -> hand the frame on.

The channel keeps its ratchet in the agent's store (:data:`STORE_NAMESPACE`,
key = the peer's agent id) and resumes it after a reconnect (the hellos:
:func:`ratchet_stream` over a stream, ``_datagram`` over UDP). Over datagrams
each frame starts with a type byte (:data:`DATAGRAM_HELLO`,
:data:`DATAGRAM_MESSAGE`); loss and reordering are the ratchet's skipped keys
(bounded by ``MAX_SKIP``), and a packet that does not open is dropped and
counted, as the datagram channel does for its own layer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import weakref
from collections.abc import Callable
from typing import Protocol

from sealwire.binding import ChannelClosed, PeerIdentity, Property
from sealwire.errors import AuthenticationError, DecodeError, RemoteProtocolError, SealwireError
from sealwire.ratchet import Rng
from sealwire.store import StateStore
from sealwire_noise import _ratchet
from sealwire_noise._channel import MAX_REASSEMBLED
from sealwire_noise._errors import NoiseStateError
from sealwire_noise._ratchet import (
    FLAG_STEP,
    RATCHET_OVERHEAD,
    Keying,
    NoiseRatchet,
    Restart,
)

__all__ = [
    "DATAGRAM_HELLO",
    "DATAGRAM_MESSAGE",
    "MAX_LATE_HELLOS",
    "STORE_NAMESPACE",
    "FrameChannel",
    "RatchetChannel",
    "acquire_lease",
    "load",
    "opened_channel",
    "ratchet_stream",
    "release_lease",
]

log = logging.getLogger("sealwire_noise.ratchet")

STORE_NAMESPACE = "noise-ratchet"
"""Where a channel's ratchet with each peer is committed."""
DATAGRAM_HELLO = 0x01
DATAGRAM_MESSAGE = 0x02
"""Over datagrams each frame starts with one of these types: a hello may be lost, so
it is repeated, and it must not be mistaken for a ratchet message."""
MAX_LATE_HELLOS = 16
"""Hellos re-sent after the datagram channel is up (the peer lost ours): bounds what
a peer, or a spoofer repeating old packets, can make us send."""


_LEASES: weakref.WeakKeyDictionary[StateStore, set[str]] = weakref.WeakKeyDictionary()
"""Per store, the peers whose stored ratchet an open session of this process holds.
A second session with the same peer meanwhile runs a fresh ratchet in memory
(:attr:`Restart.CONCURRENT`) instead of forking the stored one. Weak keys: the
leases of a store go with it."""


def acquire_lease(store: StateStore, peer_id: str) -> bool:
    """Take the stored ratchet with ``peer_id`` for a session; False when another has it.
    (A store that cannot be weakly referenced is not leased: every session takes it.)"""
    try:
        held = _LEASES.setdefault(store, set())
    except TypeError:
        return True
    if peer_id in held:
        return False
    held.add(peer_id)
    return True


def release_lease(store: StateStore, peer_id: str) -> None:
    try:
        held = _LEASES.get(store)
    except TypeError:
        return
    if held is not None:
        held.discard(peer_id)


class FrameChannel(Protocol):
    """The Noise channel underneath (stream or datagram)."""

    @property
    def peer(self) -> PeerIdentity: ...

    @property
    def properties(self) -> frozenset[Property]: ...

    async def send(self, frame: bytes) -> None: ...

    async def receive(self) -> bytes: ...

    async def close(self) -> None: ...


class RatchetChannel:
    """A :class:`sealwire.binding.SecureChannel` with per-message forward secrecy and
    break-in recovery. ``restart`` says how its ratchet began (resumed, or fresh and
    why); ``rejected`` counts datagrams dropped by the ratchet layer."""

    def __init__(
        self,
        inner: FrameChannel,
        ratchet: NoiseRatchet,
        *,
        handshake_hash: bytes,
        restart: Restart,
        clock: Callable[[], float],
        store: StateStore | None,
        rng: Rng = os.urandom,
        datagram_hello: bytes | None = None,
    ) -> None:
        self._inner = inner
        self._ratchet = ratchet
        self._h = handshake_hash
        self.restart = restart
        self._clock = clock
        self._store = store
        self._rng = rng
        self._hello = datagram_hello  # set over datagrams: our hello, resent on request
        self._lossy = datagram_hello is not None
        self._late_hellos = 0
        self._leased = store is not None  # a channel that stores its ratchet holds the lease
        self._properties = inner.properties | {Property.POST_COMPROMISE_SECURITY}
        self._step_due = False
        self.rejected = 0

    def __repr__(self) -> str:
        return f"<RatchetChannel over {self._inner!r} restart={self.restart.value}>"

    @property
    def peer(self) -> PeerIdentity:
        return self._inner.peer

    @property
    def properties(self) -> frozenset[Property]:
        return self._properties

    @property
    def ratchet(self) -> NoiseRatchet:
        """The current (committed) ratchet; secrets stay out of its repr."""
        return self._ratchet

    @property
    def max_frame_size(self) -> int | None:
        """Largest frame over a datagram channel (``None`` over a stream)."""
        inner = getattr(self._inner, "max_frame_size", None)
        return None if inner is None else int(inner) - RATCHET_OVERHEAD - 1  # the type byte

    def _release(self) -> None:
        if self._leased and self._store is not None:
            self._leased = False
            release_lease(self._store, self.peer.agent_id)

    def _commit(self, ratchet: NoiseRatchet) -> None:
        if self._store is not None:
            self._store.put(STORE_NAMESPACE, self.peer.agent_id, _ratchet.encode(ratchet))
        self._ratchet = ratchet

    async def send(self, frame: bytes, *, flags: int = 0) -> None:
        """Encrypt one frame with the next message key, commit, then send it.

        A frame too large for the channel is refused before the ratchet moves.
        """
        limit = self.max_frame_size
        if len(frame) > (MAX_REASSEMBLED - RATCHET_OVERHEAD if limit is None else limit):
            raise NoiseStateError("frame too large for the ratcheted channel")
        ratchet, message = _ratchet.seal(self._ratchet, frame, self._h, self._rng, flags=flags)
        self._commit(ratchet)
        try:
            await self._inner.send(bytes((DATAGRAM_MESSAGE,)) + message if self._lossy else message)
        except ChannelClosed:
            self._release()
            raise

    def open(self, message: bytes) -> bytes | None:
        """Open one ratchet message and commit; the frame, or ``None`` for a STEP.
        Typed errors leave the committed ratchet unchanged."""
        opened = _ratchet.open_message(
            self._ratchet, message, self._h, now=self._clock(), rng=self._rng
        )
        self._commit(opened.ratchet)
        self._step_due = opened.step_due
        return opened.frame

    async def receive(self) -> bytes:
        """The next frame; STEP messages are consumed, and one is sent back when due."""
        while True:
            try:
                message = await self._inner.receive()
            except ChannelClosed:
                self._release()
                raise
            self._step_due = False
            if self._lossy:
                kind, message = message[:1], message[1:]
                if kind == bytes((DATAGRAM_HELLO,)):
                    await self._resend_hello()
                    continue
                if kind != bytes((DATAGRAM_MESSAGE,)):
                    self.rejected += 1
                    continue
            try:
                frame = self.open(message)
            except (DecodeError, AuthenticationError, RemoteProtocolError) as exc:
                if not self._lossy:
                    raise
                self.rejected += 1
                log.debug("dropped a ratchet datagram: %s", type(exc).__name__)
                continue
            if self._step_due:
                await self._send_step()
            if frame is not None:
                return frame

    async def _resend_hello(self) -> None:
        """The initiator repeats its hello: ours was lost. Answer, a bounded number of
        times (the initiator itself ignores a late copy of the responder's)."""
        if self._hello is not None and self._late_hellos < MAX_LATE_HELLOS:
            self._late_hellos += 1
            await self._inner.send(bytes((DATAGRAM_HELLO,)) + self._hello)

    async def _send_step(self) -> None:
        with contextlib.suppress(ChannelClosed):  # due again on the next message we get
            await self.send(b"", flags=FLAG_STEP)

    async def close(self) -> None:
        self._release()
        await self._inner.close()


def load(store: StateStore, peer_id: str) -> NoiseRatchet | None:
    """Our stored ratchet with ``peer_id``; a corrupted record counts as lost state."""
    raw = store.get(STORE_NAMESPACE, peer_id)
    if raw is None:
        return None
    try:
        return _ratchet.decode(raw)
    except DecodeError as exc:
        log.warning("stored Noise ratchet with %s is unreadable (%s)", peer_id, exc.code)
        return None


async def ratchet_stream(
    inner: FrameChannel,
    keys: Keying,
    *,
    initiator: bool,
    store: StateStore,
    clock: Callable[[], float],
    rng: Rng = os.urandom,
) -> RatchetChannel:
    """Exchange hellos on a fresh Noise stream channel, resume or start the ratchet
    (committing it), and return the ratchet channel.

    :class:`RatchetBindingError` (the peer's proof does not bind our stored
    ratchet to this handshake) and a malformed hello close the channel; the
    stored ratchet is unchanged then.
    """
    peer_id = inner.peer.agent_id
    leased = acquire_lease(store, peer_id)
    mine = load(store, peer_id) if leased else None
    hello = _ratchet.hello(mine, keys.handshake_hash, initiator=initiator, busy=not leased)
    try:
        await inner.send(hello)
        peer_hello = await inner.receive()
        ratchet, restart = _ratchet.resolve(
            mine, peer_hello, keys, initiator=initiator, rng=rng, busy=not leased
        )
    except SealwireError:  # RatchetBindingError, a malformed hello, the channel closed
        if leased:
            release_lease(store, peer_id)
        await inner.close()
        raise
    return opened_channel(
        inner, ratchet, restart, keys, leased=leased, store=store, clock=clock, rng=rng
    )


RESTARTS_TO_REPORT = (Restart.PEER_LOST_STATE, Restart.LOCAL_STATE_MISSING, Restart.DIVERGED)
"""Fresh starts that mean a ratchet was lost or forked: logged as warnings."""


def opened_channel(
    inner: FrameChannel, ratchet: NoiseRatchet, restart: Restart, keys: Keying, *,
    leased: bool, store: StateStore, clock: Callable[[], float], rng: Rng = os.urandom,
    datagram_hello: bytes | None = None,
) -> RatchetChannel:  # fmt: skip
    """The ratchet channel once the hellos are through: commit the ratchet, unless it
    is a concurrent session's (kept in memory; a lease we took goes back)."""
    peer_id = inner.peer.agent_id
    if restart in RESTARTS_TO_REPORT:
        log.warning("Noise ratchet with %s started afresh: %s", peer_id, restart.value)
    concurrent = restart is Restart.CONCURRENT
    if concurrent and leased:
        release_lease(store, peer_id)
    channel = RatchetChannel(
        inner, ratchet, handshake_hash=keys.handshake_hash, restart=restart, clock=clock,
        store=None if concurrent else store, rng=rng, datagram_hello=datagram_hello,
    )  # fmt: skip
    channel._commit(ratchet)
    return channel
