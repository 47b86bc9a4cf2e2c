"""The Sealwire Signal wire profile, version 1: envelope, prekey bundle, prekey blobs.

Everything the protocol core needs to put on the wire lives here and nowhere
else, so a second profile (say, libsignal's protobuf messages) could be added
beside it without touching X3DH or the ratchet. All integers are big-endian;
``opaque16<x>`` is a uint16 length then the bytes. Decoders are strict: every
length is checked against the input before slicing, every field against its
bound, unknown versions and flags are rejected, and trailing bytes are an error.

Envelope (``magic "SWSE"``)::

    struct {
        uint8  magic[4] = "SWSE";
        uint8  version = 1;
        uint8  kind;                  // 1 prekey message, 2 message
        uint8  flags;                 // bit 0: header encryption (Double Ratchet §4),
                                      // bit 1: card follows, bit 2: known_card follows
        opaque16 sender_id;           // agent id, UTF-8, <= 256 bytes
        opaque16 recipient_id;        // agent id, UTF-8, <= 256 bytes
        uint8  message_id[16];        // random, unique per sender
        opaque16 negotiation;         // sealwire.binding.Negotiation.transcript(), <= 4096
        uint8  known_card[32];        // when bit 2: SHA-256 of the recipient's signed card
                                      // as the sender holds it
        opaque32 card;                // when bit 1 (kind 2 only), not empty: the sender's
                                      // signed card, when the recipient holds another
        PrekeyPart prekey;            // only when kind == 1
        opaque16 header;              // 40 bytes, or 68 when encrypted
        opaque32 ciphertext;          // <= MAX_CIPHERTEXT
    } Envelope;

    struct {                          // X3DH §3.3 / PQXDH §3.3 initial message
        uint8  identity_key[32];      // IK_A
        uint8  ephemeral_key[32];     // EK_A
        uint32 signed_prekey_id;
        uint8  present;               // bit 0: one-time prekey, bit 1: PQ prekey,
                                      // bit 2: ML-DSA-65 signature
        uint32 one_time_prekey_id;    // when bit 0
        uint32 kem_prekey_id;         // when bit 1
        uint8  kem_ciphertext[1088];  // when bit 1
        uint8  mldsa_signature[3309]; // when bit 2: by the sender's card's ML-DSA-65 key
                                      // over _x3dh.initial_message_input(the part
                                      // encoded without it and bit 2, sender, recipient)
        opaque32 card;                // the sender's signed agent card (JSON), <= 64 KiB
    } PrekeyPart;

Everything before ``header`` is the envelope's *associated prefix*: it goes
into the ratchet's associated data, so the AEAD authenticates it. ``known_card``
and ``card`` let a peer that moved its mailbox (a new card, naming another home
relay) tell the peers it has sessions with, whose answers go where its card says.

Bundle (``magic "SWSB"``)::

    struct {
        uint8  magic[4] = "SWSB"; uint8 version = 1;
        uint8  identity_key[32];
        uint32 spk_id; uint8 spk[32]; uint8 spk_signature[64];
        uint8  has_kem;               // 0 or 1
        uint32 kem_id; uint8 kem[1184]; uint8 kem_signature[64];   // when has_kem
        // present only when the agent has an ML-DSA-65 key (hybrid signatures):
        uint8  has_mldsa = 1;
        uint8  spk_mldsa_signature[3309];
        uint8  kem_mldsa_signature[3309];                          // when has_kem
    } PrekeyBundle;

One-time prekey blobs in the directory pools: ``x25519`` is the 32-byte
public key; ``mlkem768`` is ``kem[1184] || kem_signature[64]``, followed by
``kem_mldsa_signature[3309]`` when the agent has an ML-DSA-65 key. The pool
entry's id is the decimal prekey id.
"""

from __future__ import annotations

import functools
import hashlib

import attrs

from sealwire_signal._crypto import KEY_LEN
from sealwire_signal._errors import EnvelopeDecodeError, UnsupportedVersionError
from sealwire_signal._x3dh import (
    MLDSA65_SIGNATURE_LEN,
    MLKEM768_CIPHERTEXT_LEN,
    MLKEM768_PUBLIC_LEN,
    KemPrekey,
    PrekeyBundle,
    SignedPrekey,
)

__all__ = [
    "BUNDLE_MAGIC",
    "CARD_DIGEST_LEN",
    "card_digest",
    "ENVELOPE_MAGIC",
    "KIND_MESSAGE",
    "KIND_PREKEY",
    "MAX_CARD_LEN",
    "MAX_CIPHERTEXT",
    "MAX_ID_LEN",
    "MAX_NEGOTIATION_LEN",
    "MESSAGE_ID_LEN",
    "WIRE_VERSION",
    "Envelope",
    "PrekeyPart",
    "Reader",
    "decode_bundle",
    "decode_kem_blob",
    "encode_bundle",
    "encode_kem_blob",
    "opaque",
]

ENVELOPE_MAGIC = b"SWSE"
BUNDLE_MAGIC = b"SWSB"
WIRE_VERSION = 1
KIND_PREKEY = 1
KIND_MESSAGE = 2
FLAG_HEADER_ENCRYPTION = 0x01
FLAG_CARD = 0x02
FLAG_KNOWN_CARD = 0x04
_FLAGS = FLAG_HEADER_ENCRYPTION | FLAG_CARD | FLAG_KNOWN_CARD
CARD_DIGEST_LEN = 32
"""SHA-256: how an envelope (``known_card``) and a session record name a card."""
CARD_DIGEST_CACHE = 64
"""Cards whose digest is remembered: hashing a card (~1.4 KiB, ~10 KiB with an ML-DSA key)
on every message costs as much as encoding the rest of the session record; 64 covers the
peers an agent talks with at once and holds at most 4 MiB of cards (MAX_CARD_LEN each)."""
MESSAGE_ID_LEN = 16
SIGNATURE_LEN = 64
MAX_ID_LEN = 256
"""Agent ids are short fingerprints; 256 bytes leaves room without inviting abuse."""
MAX_NEGOTIATION_LEN = 4096
"""A transcript of at most 32 offers per side (binding.MAX_OFFERS) of <= 256-byte URIs fits
comfortably; anything longer is hostile."""
MAX_CIPHERTEXT = 16 * 1024 * 1024
"""One A2A frame per envelope; 16 MiB is the largest message the relay client accepts."""
MAX_CARD_LEN = 64 * 1024
"""A signed agent card with a few keys and bindings is a few KiB; 64 KiB bounds it."""
_HEADER_LENS = (KEY_LEN + 8, 12 + KEY_LEN + 8 + 16)


class Reader:
    """A strict cursor over bytes: every read checks the remaining length first."""

    def __init__(self, data: bytes, what: str) -> None:
        self._view = memoryview(data)
        self._pos = 0
        self._what = what

    def take(self, n: int, field: str) -> bytes:
        end = self._pos + n
        if end > len(self._view):
            raise EnvelopeDecodeError("truncated", field=f"{self._what}.{field}")
        out = bytes(self._view[self._pos : end])
        self._pos = end
        return out

    def uint(self, size: int, field: str) -> int:
        return int.from_bytes(self.take(size, field), "big")

    def opaque(self, size: int, limit: int, field: str) -> bytes:
        n = self.uint(size, field)
        if n > limit:
            raise EnvelopeDecodeError(f"longer than {limit} bytes", field=f"{self._what}.{field}")
        return self.take(n, field)

    def text(self, field: str) -> str:
        raw = self.opaque(2, MAX_ID_LEN, field)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise EnvelopeDecodeError("not UTF-8", field=f"{self._what}.{field}") from None

    def magic(self, magic: bytes) -> None:
        if self.take(len(magic), "magic") != magic:
            raise EnvelopeDecodeError("bad magic", field=f"{self._what}.magic")
        version = self.uint(1, "version")
        if version != WIRE_VERSION:
            raise UnsupportedVersionError(f"version {version}", field=f"{self._what}.version")

    def at_end(self) -> bool:
        return self._pos == len(self._view)

    def finish(self) -> None:
        if self._pos != len(self._view):
            raise EnvelopeDecodeError("trailing bytes", field=self._what)


@functools.lru_cache(maxsize=CARD_DIGEST_CACHE)
def card_digest(card: bytes) -> bytes:
    """The SHA-256 of a signed card, as envelopes and session records name it."""
    return hashlib.sha256(card).digest()


def opaque(data: bytes, size: int) -> bytes:
    """``data`` after its length in ``size`` bytes, big-endian (what Reader.opaque reads)."""
    return len(data).to_bytes(size, "big") + data


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


@attrs.frozen(kw_only=True)
class PrekeyPart:
    """The X3DH / PQXDH initial-message fields (X3DH §3.3, PQXDH §3.3)."""

    identity_key: bytes
    ephemeral_key: bytes
    signed_prekey_id: int
    one_time_prekey_id: int | None = None
    kem_prekey_id: int | None = None
    kem_ciphertext: bytes | None = None
    mldsa_signature: bytes | None = attrs.field(default=None, repr=False)
    card: bytes = attrs.field(default=b"", repr=False)

    def to_bytes(self) -> bytes:
        present = (self.one_time_prekey_id is not None) | (self.kem_prekey_id is not None) << 1
        present |= (self.mldsa_signature is not None) << 2
        out = self.identity_key + self.ephemeral_key + _u32(self.signed_prekey_id)
        out += bytes((present,))
        if self.one_time_prekey_id is not None:
            out += _u32(self.one_time_prekey_id)
        if self.kem_prekey_id is not None:
            assert self.kem_ciphertext is not None
            out += _u32(self.kem_prekey_id) + self.kem_ciphertext
        if self.mldsa_signature is not None:
            out += self.mldsa_signature
        return out + opaque(self.card, 4)

    def unsigned_bytes(self) -> bytes:
        """The encoding without the ML-DSA-65 signature: what that signature covers."""
        return attrs.evolve(self, mldsa_signature=None).to_bytes()

    @classmethod
    def read(cls, reader: Reader) -> PrekeyPart:
        identity = reader.take(KEY_LEN, "identity_key")
        ephemeral = reader.take(KEY_LEN, "ephemeral_key")
        spk_id = reader.uint(4, "signed_prekey_id")
        present = reader.uint(1, "present")
        if present & ~0x07:
            raise EnvelopeDecodeError("unknown presence bits", field="envelope.present")
        opk_id = reader.uint(4, "one_time_prekey_id") if present & 1 else None
        kem_id = kem_ct = None
        if present & 2:
            kem_id = reader.uint(4, "kem_prekey_id")
            kem_ct = reader.take(MLKEM768_CIPHERTEXT_LEN, "kem_ciphertext")
        signature = reader.take(MLDSA65_SIGNATURE_LEN, "mldsa_signature") if present & 4 else None
        card = reader.opaque(4, MAX_CARD_LEN, "card")
        return cls(
            identity_key=identity, ephemeral_key=ephemeral, signed_prekey_id=spk_id,
            one_time_prekey_id=opk_id, kem_prekey_id=kem_id, kem_ciphertext=kem_ct,
            mldsa_signature=signature, card=card,
        )  # fmt: skip


@attrs.frozen(kw_only=True)
class Envelope:
    """One sealed A2A frame (see the module docstring for the layout)."""

    sender_id: str
    recipient_id: str
    message_id: bytes
    negotiation: bytes
    prekey: PrekeyPart | None
    header_encryption: bool
    header: bytes
    ciphertext: bytes = attrs.field(repr=False)
    known_card: bytes | None = None
    """The SHA-256 of the recipient's card as the sender holds it (None: not said)."""
    card: bytes = attrs.field(default=b"", repr=False)
    """The sender's signed card (JSON), sent while the recipient holds another one."""

    def associated_prefix(self) -> bytes:
        """The bytes before ``header``: authenticated as part of the ratchet's AD."""
        kind = KIND_PREKEY if self.prekey is not None else KIND_MESSAGE
        flags = int(self.header_encryption) | (FLAG_CARD if self.card else 0)
        flags |= FLAG_KNOWN_CARD if self.known_card is not None else 0
        out = ENVELOPE_MAGIC + bytes((WIRE_VERSION, kind, flags))
        out += opaque(self.sender_id.encode(), 2) + opaque(self.recipient_id.encode(), 2)
        out += self.message_id + opaque(self.negotiation, 2)
        if self.known_card is not None:
            out += self.known_card
        if self.card:
            out += opaque(self.card, 4)
        if self.prekey is not None:
            out += self.prekey.to_bytes()
        return out

    def to_bytes(self) -> bytes:
        return self.associated_prefix() + opaque(self.header, 2) + opaque(self.ciphertext, 4)

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        """Decode an envelope from the relay (hostile input): EnvelopeDecodeError or a value."""
        r = Reader(data, "envelope")
        r.magic(ENVELOPE_MAGIC)
        kind, flags = r.uint(1, "kind"), r.uint(1, "flags")
        if kind not in (KIND_PREKEY, KIND_MESSAGE):
            raise EnvelopeDecodeError("unknown kind", field="envelope.kind")
        if flags & ~_FLAGS:
            raise EnvelopeDecodeError("unknown flags", field="envelope.flags")
        if flags & FLAG_CARD and kind == KIND_PREKEY:  # its prekey part carries the card
            raise EnvelopeDecodeError("a card beside an initial message", field="envelope.flags")
        sender, recipient = r.text("sender_id"), r.text("recipient_id")
        message_id = r.take(MESSAGE_ID_LEN, "message_id")
        negotiation = r.opaque(2, MAX_NEGOTIATION_LEN, "negotiation")
        known = r.take(CARD_DIGEST_LEN, "known_card") if flags & FLAG_KNOWN_CARD else None
        card = r.opaque(4, MAX_CARD_LEN, "card") if flags & FLAG_CARD else b""
        if flags & FLAG_CARD and not card:
            raise EnvelopeDecodeError("empty card", field="envelope.card")
        prekey = PrekeyPart.read(r) if kind == KIND_PREKEY else None
        header = r.opaque(2, max(_HEADER_LENS), "header")
        if len(header) != _HEADER_LENS[flags & FLAG_HEADER_ENCRYPTION]:
            raise EnvelopeDecodeError("header length does not match flags", field="envelope.header")
        ciphertext = r.opaque(4, MAX_CIPHERTEXT, "ciphertext")
        r.finish()
        return cls(
            sender_id=sender, recipient_id=recipient, message_id=message_id,
            negotiation=negotiation, prekey=prekey,
            header_encryption=bool(flags & FLAG_HEADER_ENCRYPTION), header=header,
            ciphertext=ciphertext, known_card=known, card=card,
        )  # fmt: skip


def encode_bundle(bundle: PrekeyBundle) -> bytes:
    """Encode a prekey bundle for the relay's directory."""
    spk = bundle.signed_prekey
    out = BUNDLE_MAGIC + bytes((WIRE_VERSION,)) + bundle.identity_key
    out += _u32(spk.id) + spk.public + spk.signature
    kem = bundle.kem_prekey
    out += b"\x00" if kem is None else b"\x01" + _u32(kem.id) + kem.public + kem.signature
    if spk.mldsa_signature is None:
        return out
    out += b"\x01" + spk.mldsa_signature
    if kem is not None:
        assert kem.mldsa_signature is not None  # an agent with ML-DSA signs every prekey
        out += kem.mldsa_signature
    return out


def decode_bundle(data: bytes) -> PrekeyBundle:
    """Decode a bundle fetched from the directory; its signatures are still unchecked."""
    r = Reader(data, "bundle")
    r.magic(BUNDLE_MAGIC)
    identity = r.take(KEY_LEN, "identity_key")
    spk = SignedPrekey(
        id=r.uint(4, "spk_id"),
        public=r.take(KEY_LEN, "spk"),
        signature=r.take(SIGNATURE_LEN, "spk_signature"),
    )
    has_kem = r.uint(1, "has_kem")
    if has_kem > 1:
        raise EnvelopeDecodeError("has_kem must be 0 or 1", field="bundle.has_kem")
    kem = None
    if has_kem:
        kem = KemPrekey(
            id=r.uint(4, "kem_id"),
            public=r.take(MLKEM768_PUBLIC_LEN, "kem"),
            signature=r.take(SIGNATURE_LEN, "kem_signature"),
        )
    if not r.at_end():
        if r.uint(1, "has_mldsa") != 1:
            raise EnvelopeDecodeError("has_mldsa must be 1", field="bundle.has_mldsa")
        spk = attrs.evolve(spk, mldsa_signature=r.take(MLDSA65_SIGNATURE_LEN, "spk_mldsa"))
        if kem is not None:
            signature = r.take(MLDSA65_SIGNATURE_LEN, "kem_mldsa")
            kem = attrs.evolve(kem, mldsa_signature=signature)
    r.finish()
    return PrekeyBundle(identity_key=identity, signed_prekey=spk, kem_prekey=kem)


def encode_kem_blob(prekey: KemPrekey) -> bytes:
    """A one-time PQ prekey as published in the ``mlkem768`` pool."""
    return prekey.public + prekey.signature + (prekey.mldsa_signature or b"")


def decode_kem_blob(prekey_id: int, data: bytes) -> KemPrekey:
    r = Reader(data, "kem_prekey")
    public = r.take(MLKEM768_PUBLIC_LEN, "public")
    signature = r.take(SIGNATURE_LEN, "signature")
    mldsa = None if r.at_end() else r.take(MLDSA65_SIGNATURE_LEN, "mldsa_signature")
    r.finish()
    return KemPrekey(id=prekey_id, public=public, signature=signature, mldsa_signature=mldsa)
