"""X3DH and PQXDH key agreement (Signal specifications X3DH rev 1, PQXDH rev 3).

Rules of this file:

* Curve X25519, hash SHA-256, PQKEM ML-KEM-768. ``KDF(KM)`` is HKDF-SHA256 with a
  32-byte zero salt, IKM ``F || KM`` where ``F`` is 32 ``0xFF`` bytes, and the
  info strings :data:`X3DH_INFO` / :data:`PQXDH_INFO` (X3DH §2.2, PQXDH §2.2).
* ``SK = KDF(DH1 || DH2 || DH3 [|| DH4])`` for X3DH and
  ``KDF(DH1 || DH2 || DH3 [|| DH4] || SS)`` for PQXDH (X3DH §3.3, PQXDH §3.3).
* ``AD = EncodeEC(IK_A) || EncodeEC(IK_B)`` (X3DH §3.3).
* Deviation, by design: the spec signs prekeys with XEdDSA over the X25519
  identity key. Here the agent's Ed25519 identity key signs them, over a label
  and the encoded key (the label keeps these signatures apart from every other
  thing that key signs); the binding of the X25519 identity key to the agent is
  the signed agent card, which carries both keys.
* Hybrid authentication (Sealwire addition): an agent whose card lists an
  ML-DSA-65 key also signs every prekey with it (same labelled message), and,
  as initiator, signs its initial message (:func:`initial_message_input`); a
  peer whose card lists that key must present those signatures, so a quantum
  attacker who can forge Ed25519 and solve X25519 still cannot pass off a
  prekey or an initial message as that agent's.
"""

from __future__ import annotations

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey, MLDSA65PublicKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey

from sealwire.errors import RemoteProtocolError
from sealwire_signal._crypto import KEY_LEN, DHKeyPair, Rng, encode_ec, hkdf_sha256
from sealwire_signal._errors import BadSignatureError, EnvelopeDecodeError, signal_errors

__all__ = [
    "KEM_TYPE_MLKEM768",
    "MLDSA65_SIGNATURE_LEN",
    "MLKEM768_CIPHERTEXT_LEN",
    "MLKEM768_PUBLIC_LEN",
    "PQXDH_INFO",
    "X3DH_INFO",
    "Initiation",
    "KemPrekey",
    "OneTimePrekey",
    "PrekeyBundle",
    "SharedSecret",
    "SignedPrekey",
    "VerifiedBundle",
    "encode_kem",
    "initial_message_input",
    "initiate",
    "kdf",
    "respond",
    "sign_kem_prekey",
    "sign_signed_prekey",
    "verify_mldsa",
]

X3DH_INFO = b"Sealwire_X3DH_CURVE25519_SHA-256"
PQXDH_INFO = b"Sealwire_PQXDH_CURVE25519_SHA-256_ML-KEM-768"
KEM_TYPE_MLKEM768 = 0x0A
"""PQXDH §2.5 EncodeKEM type byte for ML-KEM-768 in this profile."""
MLKEM768_PUBLIC_LEN = 1184
MLKEM768_CIPHERTEXT_LEN = 1088
MLDSA65_SIGNATURE_LEN = 3309
"""FIPS 204 Table 2: an ML-DSA-65 signature."""
_F = b"\xff" * KEY_LEN
_SPK_LABEL = b"sealwire-signal/signed-prekey/v1\x00"
_KEM_LABEL = b"sealwire-signal/kem-prekey/v1\x00"
_INITIAL_LABEL = b"sealwire-signal/initial-message/v1\x00"

SigningKey = Ed25519PrivateKey | MLDSA65PrivateKey


def kdf(key_material: bytes, info: bytes) -> bytes:
    """X3DH §2.2 KDF: HKDF-SHA256(salt = 32 zero bytes, IKM = F || KM, info), 32 bytes."""
    return hkdf_sha256(_F + key_material, salt=bytes(KEY_LEN), info=info, length=KEY_LEN)


def encode_kem(public: bytes) -> bytes:
    """PQXDH §2.5 EncodeKEM: the KEM type byte, then the ML-KEM-768 encapsulation key."""
    return bytes((KEM_TYPE_MLKEM768,)) + public


def sign_signed_prekey(signing_key: SigningKey, public: bytes) -> bytes:
    """Sig(IK, EncodeEC(SPK)) with the agent's Ed25519 key in XEdDSA's place (or its
    ML-DSA-65 key, for the second signature of a hybrid-signed agent)."""
    return signing_key.sign(_SPK_LABEL + encode_ec(public))


def sign_kem_prekey(signing_key: SigningKey, public: bytes) -> bytes:
    """Sig(IK, EncodeKEM(PQPK)) with the agent's Ed25519 key in XEdDSA's place (or its
    ML-DSA-65 key)."""
    return signing_key.sign(_KEM_LABEL + encode_kem(public))


def initial_message_input(unsigned_part: bytes, sender_id: str, recipient_id: str) -> bytes:
    """What an initiator with an ML-DSA-65 key signs: a label, both agent ids and the
    initial message's fields (identity and ephemeral keys, prekey ids, the ML-KEM
    ciphertext, its card) as :meth:`PrekeyPart.to_bytes` encodes them unsigned."""
    ids = b"".join(
        len(i.encode()).to_bytes(2, "big") + i.encode() for i in (sender_id, recipient_id)
    )
    return _INITIAL_LABEL + ids + unsigned_part


def _verify(key: Ed25519PublicKey | MLDSA65PublicKey, signature: bytes, message: bytes) -> None:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        raise BadSignatureError() from None


def verify_mldsa(key: MLDSA65PublicKey, signature: bytes | None, message: bytes) -> None:
    """An ML-DSA-65 signature that must be present and valid; BadSignatureError otherwise."""
    if signature is None or len(signature) != MLDSA65_SIGNATURE_LEN:
        raise BadSignatureError("missing or malformed ML-DSA-65 signature")
    _verify(key, signature, message)


@attrs.frozen
class OneTimePrekey:
    """A one-time X25519 prekey OPK (public part), unsigned as in X3DH §3.2."""

    id: int
    public: bytes


@attrs.frozen(kw_only=True)
class SignedPrekey:
    """The signed X25519 prekey SPK and its signature (X3DH §3.2)."""

    id: int
    public: bytes
    signature: bytes
    mldsa_signature: bytes | None = None


@attrs.frozen(kw_only=True)
class KemPrekey:
    """A signed ML-KEM-768 prekey PQPK: last-resort or one-time (PQXDH §3.2)."""

    id: int
    public: bytes
    signature: bytes
    mldsa_signature: bytes | None = None


@attrs.frozen(kw_only=True)
class PrekeyBundle:
    """What the directory serves for an agent, before its signatures are checked.

    ``identity_key`` is IK (X25519); ``kem_prekey`` is the last-resort PQPK or
    None when the agent offers plain X3DH only. Its fields are unverified until
    :meth:`verify` returns a :class:`VerifiedBundle`.
    """

    identity_key: bytes
    signed_prekey: SignedPrekey
    kem_prekey: KemPrekey | None = None

    def verify(
        self,
        signing_key: Ed25519PublicKey,
        *,
        mldsa_key: MLDSA65PublicKey | None = None,
        one_time: OneTimePrekey | None = None,
        one_time_kem: KemPrekey | None = None,
    ) -> VerifiedBundle:
        """Check every prekey signature (X3DH §3.3, PQXDH §3.3); BadSignatureError if any fails.

        With ``mldsa_key`` (the peer's card lists one), every signed prekey must also
        carry a valid ML-DSA-65 signature by it.
        """
        spk = self.signed_prekey
        message = _SPK_LABEL + encode_ec(spk.public)
        _verify(signing_key, spk.signature, message)
        if mldsa_key is not None:
            verify_mldsa(mldsa_key, spk.mldsa_signature, message)
        for kem in (self.kem_prekey, one_time_kem):
            if kem is not None:
                message = _KEM_LABEL + encode_kem(kem.public)
                _verify(signing_key, kem.signature, message)
                if mldsa_key is not None:
                    verify_mldsa(mldsa_key, kem.mldsa_signature, message)
        if one_time_kem is not None and self.kem_prekey is None:
            raise RemoteProtocolError("one-time PQ prekey without a last-resort PQ prekey")
        return VerifiedBundle(bundle=self, one_time=one_time, one_time_kem=one_time_kem)


@attrs.frozen(kw_only=True)
class VerifiedBundle:
    """A bundle whose signatures verified, with the one-time prekeys handed out with it."""

    bundle: PrekeyBundle
    one_time: OneTimePrekey | None
    one_time_kem: KemPrekey | None

    @property
    def kem_prekey(self) -> KemPrekey | None:
        """PQXDH §3.3: the one-time PQOPK when one was handed out, else the last-resort PQSPK."""
        return self.one_time_kem if self.one_time_kem is not None else self.bundle.kem_prekey


@attrs.frozen(kw_only=True)
class SharedSecret:
    """SK and AD of one key agreement."""

    secret: bytes = attrs.field(repr=False)
    associated_data: bytes


@attrs.frozen(kw_only=True)
class Initiation:
    """Alice's result (X3DH §3.3): SK, AD and what the initial message must name."""

    shared: SharedSecret
    identity_key: bytes
    ephemeral_key: bytes
    signed_prekey_id: int
    one_time_prekey_id: int | None
    kem_prekey_id: int | None
    kem_ciphertext: bytes | None
    remote_ratchet_key: bytes
    """Bob's SPK public key, his first ratchet key (Double Ratchet §7.1)."""


def initiate(identity: DHKeyPair, peer: VerifiedBundle, rng: Rng) -> Initiation:
    """Alice's side of X3DH §3.3 / PQXDH §3.3 (PQXDH when the bundle offers a PQ prekey).

    ML-KEM encapsulation draws its randomness inside ``cryptography``; every
    other random choice comes from ``rng``.
    """
    bundle = peer.bundle
    ephemeral = DHKeyPair.generate(rng)
    spk = bundle.signed_prekey.public
    with signal_errors():
        dh = identity.exchange(spk) + ephemeral.exchange(bundle.identity_key)
        dh += ephemeral.exchange(spk)
        if peer.one_time is not None:
            dh += ephemeral.exchange(peer.one_time.public)
    kem = peer.kem_prekey
    ciphertext: bytes | None = None
    info = X3DH_INFO
    if kem is not None:
        try:
            shared_secret, ciphertext = MLKEM768PublicKey.from_public_bytes(
                kem.public
            ).encapsulate()
        except ValueError:
            raise EnvelopeDecodeError("invalid ML-KEM-768 key", field="kem_prekey") from None
        dh += shared_secret
        info = PQXDH_INFO
    return Initiation(
        shared=SharedSecret(
            secret=kdf(dh, info),
            associated_data=encode_ec(identity.public) + encode_ec(bundle.identity_key),
        ),
        identity_key=identity.public,
        ephemeral_key=ephemeral.public,
        signed_prekey_id=bundle.signed_prekey.id,
        one_time_prekey_id=None if peer.one_time is None else peer.one_time.id,
        kem_prekey_id=None if kem is None else kem.id,
        kem_ciphertext=ciphertext,
        remote_ratchet_key=spk,
    )


def respond(
    *,
    identity: DHKeyPair,
    signed_prekey: DHKeyPair,
    one_time_prekey: DHKeyPair | None,
    kem_prekey: MLKEM768PrivateKey | None,
    initiator_identity: bytes,
    ephemeral_key: bytes,
    kem_ciphertext: bytes | None,
) -> SharedSecret:
    """Bob's side of X3DH §3.4 / PQXDH §3.4 on receiving an initial message.

    The caller looks the prekeys up by the ids the message names, and deletes
    the one-time ones once the first message decrypts.
    """
    if (kem_prekey is None) != (kem_ciphertext is None):
        raise RemoteProtocolError("PQ ciphertext and PQ prekey must come together")
    with signal_errors():
        dh = signed_prekey.exchange(initiator_identity) + identity.exchange(ephemeral_key)
        dh += signed_prekey.exchange(ephemeral_key)
        if one_time_prekey is not None:
            dh += one_time_prekey.exchange(ephemeral_key)
    info = X3DH_INFO
    if kem_prekey is not None and kem_ciphertext is not None:
        if len(kem_ciphertext) != MLKEM768_CIPHERTEXT_LEN:
            raise EnvelopeDecodeError("bad ML-KEM-768 ciphertext length", field="kem_ciphertext")
        dh += kem_prekey.decapsulate(kem_ciphertext)
        info = PQXDH_INFO
    return SharedSecret(
        secret=kdf(dh, info),
        associated_data=encode_ec(initiator_identity) + encode_ec(identity.public),
    )
