"""HandshakeState (Noise rev 34 §5.3) driven by pattern data (§7, §9).

Rules of this file:

* Whose turn it is, is a :class:`HandshakeStatus`; a call out of turn raises
  :class:`NoiseStateError` and changes nothing.
* ``read_message`` works on a copy of the symmetric state and commits only
  when the whole message verified (snow's checkpoint/restore), so a tampered,
  truncated or oversized message leaves the handshake exactly as it was.
* When the last message is done, :meth:`HandshakeState.into_transport` hands
  over a :class:`TransportState` (snow's ``into_transport_mode``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence

import attrs
from cryptography.hazmat.primitives.asymmetric import x448, x25519

from sealwire_noise._errors import NoiseConfigurationError, NoiseDecodeError, NoiseStateError
from sealwire_noise._hybrid import (
    KEM_CIPHERTEXT_LEN,
    KEM_NAME,
    KEM_PUBLIC_LEN,
    KemKeyPair,
    decapsulate,
    encapsulate,
    generate_kem_keypair,
)
from sealwire_noise._patterns import HandshakePattern, Token, parse_pattern
from sealwire_noise._symmetric import (
    TAG_LEN,
    Checkpoint,
    CipherState,
    CipherSuite,
    KeyPair,
    PublicKey,
    Random,
    SymmetricState,
    cipher_suite,
)
from sealwire_noise._transport import MAX_MESSAGE_LEN, TransportState

__all__ = ["HandshakeState", "HandshakeStatus", "NoiseProtocol", "PSK_LEN"]

PSK_LEN = 32  # §9.1: a psk is 32 bytes
StaticKey = x25519.X25519PrivateKey | x448.X448PrivateKey | KeyPair | bytes
"""A static key: a key object, a :class:`KeyPair` (key object and public key, made
once with ``suite.dh.keypair_from_key`` so no handshake derives the public key
again), or raw private bytes (loaded on every handshake)."""


class HandshakeStatus(enum.Enum):
    """Where a HandshakeState is (§5.3: message patterns are processed in turn)."""

    WRITE = "write"
    """Our turn: call :meth:`HandshakeState.write_message`."""
    READ = "read"
    """The peer's turn: call :meth:`HandshakeState.read_message`."""
    DONE = "done"
    """All messages processed; call :meth:`HandshakeState.into_transport`."""


MAX_CACHED_PROTOCOLS = 256
"""Parsed protocol names kept for reuse. A responder parses the name its peer
chose, so the cache is bounded; the names this binding accepts are far fewer."""


@attrs.frozen(kw_only=True)
class NoiseProtocol:
    """A parsed protocol name (§8): ``Noise_<pattern>_<dh>[+MLKEM768]_<cipher>_<hash>``.

    Parsed once per name (:meth:`from_name` keeps them) with what every
    handshake of the protocol would otherwise recompute: ``h`` after
    InitializeSymmetric (§5.2), who writes each message, and the index of the
    first psk each message uses.
    """

    name: str
    pattern: HandshakePattern
    suite: CipherSuite
    hybrid: bool
    initial_h: bytes = attrs.field(init=False, repr=False)
    initiator_writes: tuple[bool, ...] = attrs.field(init=False, repr=False)
    responder_writes: tuple[bool, ...] = attrs.field(init=False, repr=False)
    psk_index: tuple[int, ...] = attrs.field(init=False, repr=False)
    psk_count: int = attrs.field(init=False, repr=False)
    needs_static: tuple[bool, bool] = attrs.field(init=False, repr=False)
    """(responder, initiator): whether that side needs its own static key."""
    needs_remote_static: tuple[bool, bool] = attrs.field(init=False, repr=False)
    """(responder, initiator): whether that side must know the peer's static key."""

    def __attrs_post_init__(self) -> None:
        raw, suite, pattern = self.name.encode("ascii"), self.suite, self.pattern
        h = raw.ljust(suite.hashlen, b"\x00") if len(raw) <= suite.hashlen else suite.hash(raw)
        writes = tuple(pattern.sender_is_initiator(i) for i in range(len(pattern.messages)))
        psk_index = tuple(
            sum(m.count(Token.PSK) for m in pattern.messages[:i])
            for i in range(len(pattern.messages))
        )
        derived = {
            "initial_h": h,
            "initiator_writes": writes,
            "responder_writes": tuple(not w for w in writes),
            "psk_index": psk_index,
            "psk_count": pattern.psk_count,
            "needs_static": (pattern.needs_local_static(False), pattern.needs_local_static(True)),
            "needs_remote_static": (
                pattern.needs_remote_static(False),
                pattern.needs_remote_static(True),
            ),
        }
        for field, value in derived.items():
            object.__setattr__(self, field, value)

    @classmethod
    def from_name(cls, name: str) -> NoiseProtocol:
        protocol = _PROTOCOLS.get(name)
        if protocol is None:
            protocol = cls._parse(name)
            if len(_PROTOCOLS) >= MAX_CACHED_PROTOCOLS:
                del _PROTOCOLS[next(iter(_PROTOCOLS))]  # the oldest
            _PROTOCOLS[name] = protocol
        return protocol

    @classmethod
    def _parse(cls, name: str) -> NoiseProtocol:
        if not name.isascii():
            raise NoiseConfigurationError(f"not a Noise protocol name: {name[:60]!r}")
        parts = name.split("_")
        if len(parts) != 5 or parts[0] != "Noise":
            raise NoiseConfigurationError(f"not a Noise protocol name: {name[:60]!r}")
        _, pattern_name, dh, cipher, hash_name = parts
        pattern = parse_pattern(pattern_name)
        dh_name, plus, kem = dh.partition("+")
        if pattern.is_hybrid != bool(plus) or (plus and kem != KEM_NAME):
            raise NoiseConfigurationError("hfs pattern and +MLKEM768 must come together")
        return cls(
            name=name,
            pattern=pattern,
            suite=cipher_suite(dh_name, cipher, hash_name),
            hybrid=bool(plus),
        )


_PROTOCOLS: dict[str, NoiseProtocol] = {}

_E, _S, _EE, _ES, _SS = Token.E, Token.S, Token.EE, Token.ES, Token.SS
_PSK, _E1, _EKEM1 = Token.PSK, Token.E1, Token.EKEM1
_WRITE, _READ, _DONE = HandshakeStatus.WRITE, HandshakeStatus.READ, HandshakeStatus.DONE

_Saved = tuple[
    Checkpoint,
    KeyPair | None,
    PublicKey | None,
    PublicKey | None,
    bytes | None,
    KemKeyPair | None,
    bytes | None,
]
"""A message's checkpoint: the symmetric state and the key variables ``e, re, rs``
(object and bytes), ``e1, re1``; ``s`` and the psks never change."""


class HandshakeState:
    """§5.3 HandshakeState for one party.

    ``static`` is the local static key (a key object, a :class:`KeyPair`, or raw
    private bytes: see :data:`StaticKey`);
    ``remote_static`` the peer's public key when the pattern pre-shares it
    (``K``/``I``... patterns); ``psks`` are used in pattern order. ``random``
    supplies ephemeral keys. ``fixed_ephemeral_for_testing_only`` fixes ``e``
    to reproduce published test vectors and must never be used otherwise.

    The key variables of §5.3 live on the object: ``e`` (a key pair), ``re``
    and ``rs`` (the peer's keys, parsed once into key objects), ``e1``/``re1``
    (the hybrid's). Each message checkpoints them and the symmetric state
    first and restores them if anything in the message fails.
    """

    def __init__(
        self,
        protocol: NoiseProtocol | str,
        *,
        initiator: bool,
        random: Random,
        prologue: bytes = b"",
        static: StaticKey | None = None,
        remote_static: bytes | None = None,
        psks: Sequence[bytes] = (),
        fixed_ephemeral_for_testing_only: bytes | None = None,
    ) -> None:
        if isinstance(protocol, str):
            protocol = NoiseProtocol.from_name(protocol)
        self.protocol = protocol
        self.initiator = initiator
        self._random = random
        self._fixed_e = fixed_ephemeral_for_testing_only
        pattern = protocol.pattern
        self._dhf = protocol.suite.dh
        self._dhlen = self._dhf.dhlen
        self._messages = pattern.messages
        self._writes = protocol.initiator_writes if initiator else protocol.responder_writes
        self._has_psk = protocol.psk_count > 0
        self._s = self._load_static(static)
        self._e: KeyPair | None = None
        self._re: PublicKey | None = None
        self._rs_raw = remote_static  # parsed when a DH first needs it
        self._rs: PublicKey | None = None
        self._e1: KemKeyPair | None = None
        self._re1: bytes | None = None
        self._psks = self._check_psks(psks)
        self._check_keys(remote_static)
        sym = self._sym = SymmetricState.initialized(protocol.suite, protocol.initial_h)
        sym.mix_hash(prologue)
        for token in pattern.initiator_pre:  # §7.1: initiator's pre-message first
            sym.mix_hash(self._pre_key(token, initiator_side=True))
        for token in pattern.responder_pre:
            sym.mix_hash(self._pre_key(token, initiator_side=False))
        self._index = 0
        self._spent = False
        self.payload_hash = b""
        """``h`` just before the payload of the last message written or read: what a
        payload signature covers (the same on both sides; it binds the prologue, every
        key and ciphertext of the handshake so far, and this message's tokens)."""

    def __repr__(self) -> str:
        role = "initiator" if self.initiator else "responder"
        return f"<HandshakeState {self.protocol.name} {role} {self.status.value}>"

    # -- set-up -----------------------------------------------------------------

    def _load_static(self, static: StaticKey | None) -> KeyPair | None:
        if static is None:
            return None
        if isinstance(static, bytes):
            return self._dhf.keypair_from_private(static)
        if isinstance(static, KeyPair):
            return self._dhf.keypair_from_pair(static)
        return self._dhf.keypair_from_key(static)

    def _check_psks(self, psks: Sequence[bytes]) -> list[bytes]:
        if len(psks) != self.protocol.psk_count:
            raise NoiseConfigurationError(
                f"pattern needs {self.protocol.psk_count} psks, got {len(psks)}"
            )
        if any(len(p) != PSK_LEN for p in psks):
            raise NoiseConfigurationError(f"a psk must be {PSK_LEN} bytes")
        return list(psks)

    def _check_keys(self, remote_static: bytes | None) -> None:
        if self.protocol.needs_static[self.initiator] and self._s is None:
            raise NoiseConfigurationError("the pattern needs a local static key")
        if self.protocol.needs_remote_static[self.initiator]:
            if remote_static is None:
                raise NoiseConfigurationError("the pattern needs the peer's static key")
            if len(remote_static) != self._dhlen:
                raise NoiseConfigurationError("the peer's static key has the wrong length")
        elif remote_static is not None:
            # A key the pattern never uses would be reported as the peer's by
            # remote_static without the handshake having authenticated it.
            raise NoiseConfigurationError(
                f"{self.protocol.pattern.name} does not pre-share the peer's static key"
            )

    def _pre_key(self, token: Token, *, initiator_side: bool) -> bytes:
        if token is not Token.S:
            raise NoiseConfigurationError("only static pre-messages are supported")
        if initiator_side == self.initiator:
            assert self._s is not None  # checked by _check_keys
            return self._s.public
        assert self._rs_raw is not None
        return self._rs_raw

    # -- state ------------------------------------------------------------------

    @property
    def status(self) -> HandshakeStatus:
        index = self._index
        if index >= len(self._writes):
            return _DONE
        return _WRITE if self._writes[index] else _READ

    @property
    def is_finished(self) -> bool:
        return self._index >= len(self._writes)

    @property
    def handshake_hash(self) -> bytes:
        """``h``: the channel binding value (§11.2); final once the handshake is done."""
        return self._sym.h

    @property
    def remote_static(self) -> bytes | None:
        """The peer's static public key: the pre-shared one the pattern declares, or the
        one its handshake messages carried (kept after the handshake); None otherwise."""
        return self._rs_raw

    @property
    def local_static_public(self) -> bytes | None:
        return None if self._s is None else self._s.public

    def _expect(self, status: HandshakeStatus) -> None:
        if self.status is not status:
            raise NoiseStateError(f"cannot {status.value} a message now: {self.status.value}")

    def _checkpoint(self) -> _Saved:
        return (
            self._sym.checkpoint(),
            self._e,
            self._re,
            self._rs,
            self._rs_raw,
            self._e1,
            self._re1,
        )

    def _restore(self, saved: _Saved) -> None:
        sym, self._e, self._re, self._rs, self._rs_raw, self._e1, self._re1 = saved
        self._sym.restore(sym)

    # -- messages ---------------------------------------------------------------

    def write_message(self, payload: bytes | Callable[[bytes], bytes] = b"") -> bytes:
        """WriteMessage (§5.3): the next handshake message carrying ``payload``.

        ``payload`` may be a function of ``h`` at the point where the payload is
        encrypted (:attr:`payload_hash`), for a payload that signs the handshake.
        """
        index = self._index
        if index >= len(self._writes) or not self._writes[index]:
            self._expect(_WRITE)
        sym = self._sym
        saved = self._checkpoint()
        try:
            out: list[bytes] = []
            psk_at = self.protocol.psk_index[index]
            for token in self._messages[index]:
                if token is _E:
                    e = self._e = self._new_ephemeral()
                    out.append(e.public)
                    sym.mix_hash(e.public)
                    if self._has_psk:  # §9.2
                        sym.mix_key(e.public)
                elif token is _S:
                    assert self._s is not None
                    out.append(sym.encrypt_and_hash(self._s.public))
                elif token is _PSK:
                    sym.mix_key_and_hash(self._psks[psk_at])
                    psk_at += 1
                elif token is _E1:
                    self._e1 = generate_kem_keypair(self._random)
                    out.append(sym.encrypt_and_hash(self._e1.public))
                elif token is _EKEM1:
                    assert self._re1 is not None
                    shared, ciphertext = encapsulate(self._re1)
                    out.append(sym.encrypt_and_hash(ciphertext))
                    sym.mix_key(shared)
                else:
                    sym.mix_key(self._dh(token))
            h = sym.h
            if callable(payload):
                payload = payload(h)
            out.append(sym.encrypt_and_hash(payload))
            message = b"".join(out)
            if len(message) > MAX_MESSAGE_LEN:
                raise NoiseStateError(f"handshake message exceeds {MAX_MESSAGE_LEN} bytes")
        except BaseException:
            self._restore(saved)
            raise
        self._index = index + 1
        self.payload_hash = h
        return message

    def read_message(self, message: bytes) -> bytes:
        """ReadMessage (§5.3): the payload; on any failure the state is unchanged."""
        index = self._index
        if index >= len(self._writes) or self._writes[index]:
            self._expect(_READ)
        if len(message) > MAX_MESSAGE_LEN:
            raise NoiseDecodeError("message exceeds 65535 bytes", field="noise.message")
        if type(message) is not bytes:  # a bytearray or memoryview: its slices must be bytes
            message = bytes(message)
        sym = self._sym
        saved = self._checkpoint()
        try:
            at = 0
            psk_at = self.protocol.psk_index[index]
            for token in self._messages[index]:
                if token is _E:
                    raw, at = self._take(message, at, self._dhlen, "noise.e")
                    self._re = self._dhf.public_key(raw)
                    sym.mix_hash(raw)
                    if self._has_psk:
                        sym.mix_key(raw)
                elif token is _S:
                    raw, at = self._take(message, at, self._dhlen + self._tag(sym), "noise.s")
                    self._rs_raw = sym.decrypt_and_hash(raw)
                    self._rs = self._dhf.public_key(self._rs_raw)
                elif token is _PSK:
                    sym.mix_key_and_hash(self._psks[psk_at])
                    psk_at += 1
                elif token is _E1:
                    raw, at = self._take(message, at, KEM_PUBLIC_LEN + self._tag(sym), "noise.e1")
                    self._re1 = sym.decrypt_and_hash(raw)
                elif token is _EKEM1:
                    need = KEM_CIPHERTEXT_LEN + self._tag(sym)
                    raw, at = self._take(message, at, need, "noise.ekem1")
                    assert self._e1 is not None
                    sym.mix_key(decapsulate(self._e1, sym.decrypt_and_hash(raw)))
                else:
                    sym.mix_key(self._dh(token))
            h = sym.h
            payload = sym.decrypt_and_hash(message[at:] if at else message)
        except BaseException:
            self._restore(saved)
            raise
        self._index = index + 1
        self.payload_hash = h
        return payload

    def _new_ephemeral(self) -> KeyPair:
        if self._fixed_e is not None:
            return self._dhf.keypair_from_private(self._fixed_e)
        return self._dhf.generate_keypair(self._random)

    @staticmethod
    def _tag(sym: SymmetricState) -> int:
        return TAG_LEN if sym.cs.has_key() else 0

    @staticmethod
    def _take(message: bytes, at: int, n: int, field: str) -> tuple[bytes, int]:
        end = at + n
        if len(message) < end:
            raise NoiseDecodeError("handshake message truncated", field=field)
        return message[at:end], end

    def _remote_static(self) -> PublicKey | None:
        """``rs`` as a key object: parsed once (pre-shared keys on first use)."""
        if self._rs is None and self._rs_raw is not None:
            self._rs = self._dhf.public_key(self._rs_raw)
        return self._rs

    def _dh(self, token: Token) -> bytes:
        """§5.3 ee/es/se/ss: which local and remote key each DH token uses."""
        local: KeyPair | None
        remote: PublicKey | None
        if token is _EE:
            local, remote = self._e, self._re
        elif token is _SS:
            local, remote = self._s, self._remote_static()
        elif (token is _ES) == self.initiator:  # es as initiator, se as responder
            local, remote = self._e, self._remote_static()
        else:  # se as initiator, es as responder
            local, remote = self._s, self._re
        if local is None or remote is None:
            raise NoiseStateError(f"{token.value}: a key of the pattern is missing")
        return self._dhf.dh(local, remote)

    # -- hand-over ---------------------------------------------------------------

    def split(self) -> tuple[CipherState, CipherState]:
        """Split() (§5.2): ``(c1, c2)``; c1 carries initiator-to-responder traffic.

        Callable once: a second pair at nonce 0 would reuse nonces.
        """
        self._expect(HandshakeStatus.DONE)
        if self._spent:
            raise NoiseStateError("the handshake was already handed over to a transport")
        self._spent = True
        return self._sym.split()

    def split_keys(self) -> tuple[bytes, bytes, bytes]:
        """``(h, k1, k2)``: the handshake hash and the two keys Split() (§5.2) gives,
        for a secret exported from this handshake (the in-session Double Ratchet
        derives its root from them through a labelled HKDF). It does not consume
        the handshake: the keys are recomputed, nothing is encrypted with them here.
        """
        self._expect(HandshakeStatus.DONE)
        temp_k1, temp_k2 = self._sym.suite.hkdf2(self._sym.ck, b"")
        return self._sym.h, temp_k1[:32], temp_k2[:32]

    def into_transport(self, *, rekey_after: int | None = None) -> TransportState:
        """The transport phase (§5.3 Split); this object must not be used afterwards.

        In a one-way pattern (§7.4) the responder only receives and the
        initiator only sends. ``rekey_after`` rekeys each direction (§11.3)
        after that many messages, on both sides in step.
        """
        c1, c2 = self.split()
        send: CipherState | None
        recv: CipherState | None
        send, recv = (c1, c2) if self.initiator else (c2, c1)
        if self.protocol.pattern.one_way:
            send, recv = (c1, None) if self.initiator else (None, c1)
        return TransportState(
            send=send,
            recv=recv,
            handshake_hash=self._sym.h,
            remote_static=self._rs_raw,
            rekey_after=rekey_after,
        )
