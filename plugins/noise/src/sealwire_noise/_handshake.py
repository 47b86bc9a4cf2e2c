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
from collections.abc import Sequence

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
    CipherState,
    CipherSuite,
    KeyPair,
    Random,
    SymmetricState,
    cipher_suite,
)
from sealwire_noise._transport import MAX_MESSAGE_LEN, TransportState

__all__ = ["HandshakeState", "HandshakeStatus", "NoiseProtocol", "PSK_LEN"]

PSK_LEN = 32  # §9.1: a psk is 32 bytes
StaticKey = x25519.X25519PrivateKey | x448.X448PrivateKey | bytes


class HandshakeStatus(enum.Enum):
    """Where a HandshakeState is (§5.3: message patterns are processed in turn)."""

    WRITE = "write"
    """Our turn: call :meth:`HandshakeState.write_message`."""
    READ = "read"
    """The peer's turn: call :meth:`HandshakeState.read_message`."""
    DONE = "done"
    """All messages processed; call :meth:`HandshakeState.into_transport`."""


@attrs.frozen(kw_only=True)
class NoiseProtocol:
    """A parsed protocol name (§8): ``Noise_<pattern>_<dh>[+MLKEM768]_<cipher>_<hash>``."""

    name: str
    pattern: HandshakePattern
    suite: CipherSuite
    hybrid: bool

    @classmethod
    def from_name(cls, name: str) -> NoiseProtocol:
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


@attrs.define
class _Keys:
    """The key variables of §5.3 that a message may set (copied as a checkpoint)."""

    e: KeyPair | None = None
    re: bytes | None = None
    rs: bytes | None = None
    e1: KemKeyPair | None = None
    re1: bytes | None = None


class HandshakeState:
    """§5.3 HandshakeState for one party.

    ``static`` is the local static key (a key object, or raw private bytes);
    ``remote_static`` the peer's public key when the pattern pre-shares it
    (``K``/``I``... patterns); ``psks`` are used in pattern order. ``random``
    supplies ephemeral keys. ``fixed_ephemeral_for_testing_only`` fixes ``e``
    to reproduce published test vectors and must never be used otherwise.
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
        pattern, dh = protocol.pattern, protocol.suite.dh
        self._s = self._load_static(static)
        self._keys = _Keys(rs=remote_static)
        self._psks = self._check_psks(psks)
        self._check_keys(pattern, remote_static)
        self._sym = SymmetricState(protocol.suite, protocol.name.encode("ascii"))
        self._sym.mix_hash(prologue)
        for token in pattern.initiator_pre:  # §7.1: initiator's pre-message first
            self._sym.mix_hash(self._pre_key(token, initiator_side=True))
        for token in pattern.responder_pre:
            self._sym.mix_hash(self._pre_key(token, initiator_side=False))
        self._index = 0
        self._spent = False
        self._dhlen = dh.dhlen

    def __repr__(self) -> str:
        role = "initiator" if self.initiator else "responder"
        return f"<HandshakeState {self.protocol.name} {role} {self.status.value}>"

    # -- set-up -----------------------------------------------------------------

    def _load_static(self, static: StaticKey | None) -> KeyPair | None:
        if static is None:
            return None
        dh = self.protocol.suite.dh
        if isinstance(static, bytes):
            return dh.keypair_from_private(static)
        return dh.keypair_from_key(static)

    def _check_psks(self, psks: Sequence[bytes]) -> list[bytes]:
        if len(psks) != self.protocol.pattern.psk_count:
            raise NoiseConfigurationError(
                f"pattern needs {self.protocol.pattern.psk_count} psks, got {len(psks)}"
            )
        if any(len(p) != PSK_LEN for p in psks):
            raise NoiseConfigurationError(f"a psk must be {PSK_LEN} bytes")
        return list(psks)

    def _check_keys(self, pattern: HandshakePattern, remote_static: bytes | None) -> None:
        if pattern.needs_local_static(self.initiator) and self._s is None:
            raise NoiseConfigurationError("the pattern needs a local static key")
        if pattern.needs_remote_static(self.initiator):
            if remote_static is None:
                raise NoiseConfigurationError("the pattern needs the peer's static key")
            if len(remote_static) != self.protocol.suite.dh.dhlen:
                raise NoiseConfigurationError("the peer's static key has the wrong length")

    def _pre_key(self, token: Token, *, initiator_side: bool) -> bytes:
        if token is not Token.S:
            raise NoiseConfigurationError("only static pre-messages are supported")
        if initiator_side == self.initiator:
            assert self._s is not None  # checked by _check_keys
            return self._s.public
        assert self._keys.rs is not None
        return self._keys.rs

    # -- state ------------------------------------------------------------------

    @property
    def status(self) -> HandshakeStatus:
        pattern = self.protocol.pattern
        if self._index >= len(pattern.messages):
            return HandshakeStatus.DONE
        mine = pattern.sender_is_initiator(self._index) == self.initiator
        return HandshakeStatus.WRITE if mine else HandshakeStatus.READ

    @property
    def is_finished(self) -> bool:
        return self.status is HandshakeStatus.DONE

    @property
    def handshake_hash(self) -> bytes:
        """``h``: the channel binding value (§11.2); final once the handshake is done."""
        return self._sym.h

    @property
    def remote_static(self) -> bytes | None:
        """The peer's static public key, once known (kept after the handshake)."""
        return self._keys.rs

    @property
    def local_static_public(self) -> bytes | None:
        return None if self._s is None else self._s.public

    def _expect(self, status: HandshakeStatus) -> None:
        if self.status is not status:
            raise NoiseStateError(f"cannot {status.value} a message now: {self.status.value}")

    # -- messages ---------------------------------------------------------------

    def write_message(self, payload: bytes = b"") -> bytes:
        """WriteMessage (§5.3): the next handshake message carrying ``payload``."""
        self._expect(HandshakeStatus.WRITE)
        sym, keys, psk_at = self._sym.copy(), attrs.evolve(self._keys), self._psk_index()
        out = bytearray()
        for token in self.protocol.pattern.messages[self._index]:
            psk_at = self._write_token(token, sym, keys, out, psk_at)
        out += sym.encrypt_and_hash(payload)
        if len(out) > MAX_MESSAGE_LEN:
            raise NoiseStateError(f"handshake message exceeds {MAX_MESSAGE_LEN} bytes")
        self._commit(sym, keys)
        return bytes(out)

    def read_message(self, message: bytes) -> bytes:
        """ReadMessage (§5.3): the payload; on any failure the state is unchanged."""
        self._expect(HandshakeStatus.READ)
        if len(message) > MAX_MESSAGE_LEN:
            raise NoiseDecodeError("message exceeds 65535 bytes", field="noise.message")
        sym, keys, psk_at = self._sym.copy(), attrs.evolve(self._keys), self._psk_index()
        view = memoryview(message)
        for token in self.protocol.pattern.messages[self._index]:
            view, psk_at = self._read_token(token, sym, keys, view, psk_at)
        payload = sym.decrypt_and_hash(bytes(view))
        self._commit(sym, keys)
        return payload

    def _psk_index(self) -> int:
        done = self.protocol.pattern.messages[: self._index]
        return sum(m.count(Token.PSK) for m in done)

    def _commit(self, sym: SymmetricState, keys: _Keys) -> None:
        self._sym, self._keys = sym, keys
        self._index += 1

    def _new_ephemeral(self) -> KeyPair:
        dh = self.protocol.suite.dh
        if self._fixed_e is not None:
            return dh.keypair_from_private(self._fixed_e)
        return dh.generate_keypair(self._random)

    def _write_token(
        self, token: Token, sym: SymmetricState, keys: _Keys, out: bytearray, psk_at: int
    ) -> int:
        if token is Token.E:
            keys.e = self._new_ephemeral()
            out += keys.e.public
            sym.mix_hash(keys.e.public)
            if self.protocol.pattern.has_psk:  # §9.2
                sym.mix_key(keys.e.public)
        elif token is Token.S:
            assert self._s is not None
            out += sym.encrypt_and_hash(self._s.public)
        elif token is Token.PSK:
            sym.mix_key_and_hash(self._psks[psk_at])
            return psk_at + 1
        elif token is Token.E1:
            keys.e1 = generate_kem_keypair(self._random)
            out += sym.encrypt_and_hash(keys.e1.public)
        elif token is Token.EKEM1:
            assert keys.re1 is not None
            shared, ciphertext = encapsulate(keys.re1)
            out += sym.encrypt_and_hash(ciphertext)
            sym.mix_key(shared)
        else:
            sym.mix_key(self._dh(token, keys))
        return psk_at

    def _read_token(
        self, token: Token, sym: SymmetricState, keys: _Keys, view: memoryview, psk_at: int
    ) -> tuple[memoryview, int]:
        if token is Token.E:
            keys.re, view = self._take(view, self._dhlen, "noise.e")
            sym.mix_hash(keys.re)
            if self.protocol.pattern.has_psk:
                sym.mix_key(keys.re)
        elif token is Token.S:
            raw, view = self._take(view, self._dhlen + self._tag(sym), "noise.s")
            keys.rs = sym.decrypt_and_hash(raw)
        elif token is Token.PSK:
            sym.mix_key_and_hash(self._psks[psk_at])
            return view, psk_at + 1
        elif token is Token.E1:
            raw, view = self._take(view, KEM_PUBLIC_LEN + self._tag(sym), "noise.e1")
            keys.re1 = sym.decrypt_and_hash(raw)
        elif token is Token.EKEM1:
            raw, view = self._take(view, KEM_CIPHERTEXT_LEN + self._tag(sym), "noise.ekem1")
            assert keys.e1 is not None
            sym.mix_key(decapsulate(keys.e1, sym.decrypt_and_hash(raw)))
        else:
            sym.mix_key(self._dh(token, keys))
        return view, psk_at

    @staticmethod
    def _tag(sym: SymmetricState) -> int:
        return TAG_LEN if sym.cs.has_key() else 0

    @staticmethod
    def _take(view: memoryview, n: int, field: str) -> tuple[bytes, memoryview]:
        if len(view) < n:
            raise NoiseDecodeError("handshake message truncated", field=field)
        return bytes(view[:n]), view[n:]

    def _dh(self, token: Token, keys: _Keys) -> bytes:
        """§5.3 ee/es/se/ss: which local and remote key each DH token uses."""
        dh = self.protocol.suite.dh
        local_e_remote_s = (token is Token.ES) == self.initiator
        if token is Token.EE:
            local, remote = keys.e, keys.re
        elif token is Token.SS:
            local, remote = self._s, keys.rs
        elif local_e_remote_s:  # es as initiator, se as responder
            local, remote = keys.e, keys.rs
        else:  # se as initiator, es as responder
            local, remote = self._s, keys.re
        if local is None or remote is None:
            raise NoiseStateError(f"{token.value}: a key of the pattern is missing")
        return dh.dh(local, remote)

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
            remote_static=self._keys.rs,
            rekey_after=rekey_after,
        )
