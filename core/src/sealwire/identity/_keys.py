"""An agent's keys, its agent id, and their storage and JSON forms.

Agent id format (``sw1`` ids)::

    agent_id = "sw1" || lowercase(base32(SHA-256(Ed25519 raw public key)))   # RFC 4648 §6, no "="

55 characters: the version tag ``sw1`` and 52 base32 characters. The id names
the signing key only; the agreement and post-quantum keys are bound to it by
the signed agent card.

Storage format, version 1 (all raw key encodings, RFC 8032 / RFC 7748 / FIPS 204 / FIPS 203)::

    version (1 byte = 0x01) || flags (1 byte: 0x01 ML-DSA-65, 0x02 ML-KEM-768)
    || Ed25519 seed (32) || X25519 private (32)
    || [ML-DSA-65 seed (32)] || [ML-KEM-768 seed (64)]
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

from attrs import field, frozen
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey, MLDSA65PublicKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from sealwire.errors import AuthenticationError, DecodeError, TrustError
from sealwire.identity._jws import b64url_decode, b64url_encode

__all__ = [
    "AGENT_ID_PREFIX",
    "STORAGE_FORMAT_VERSION",
    "Identity",
    "PublicIdentity",
    "agent_id_for",
    "is_agent_id",
]

AGENT_ID_PREFIX = "sw1"
"""Version tag of the agent id format; a new fingerprint scheme gets a new tag."""

STORAGE_FORMAT_VERSION = 1
"""Format version byte of :meth:`Identity.private_bytes_for_storage`."""

_AGENT_ID_RE = re.compile(AGENT_ID_PREFIX + r"[a-z2-7]{52}")
_FLAG_MLDSA = 0x01
_FLAG_MLKEM = 0x02
_SEED_LENGTHS = {"ed25519": 32, "x25519": 32, "mldsa65": 32, "mlkem768": 64}

# JSON member names shared by PublicIdentity.to_json and the card's identity extension.
_JSON_AGENT_ID = "agentId"
_JSON_SIGNING = "signingKey"
_JSON_AGREEMENT = "agreementKey"
_JSON_MLDSA = "mldsa65Key"
_JSON_MLKEM = "mlkem768Key"


def agent_id_for(key: Ed25519PublicKey) -> str:
    """The agent id of an Ed25519 signing key (format in the module docstring)."""
    digest = hashlib.sha256(key.public_bytes_raw()).digest()
    return AGENT_ID_PREFIX + base64.b32encode(digest).decode("ascii").rstrip("=").lower()


def is_agent_id(value: object) -> bool:
    """Whether ``value`` is a well-formed agent id (it says nothing of trust)."""
    return isinstance(value, str) and _AGENT_ID_RE.fullmatch(value) is not None


def _check_agent_id(public: PublicIdentity, _attribute: object, value: str) -> None:
    if value != agent_id_for(public.signing_key):
        raise ValueError("agent_id is not the fingerprint of signing_key")


@frozen(kw_only=True, eq=False, repr=False)
class PublicIdentity:
    """An agent's public keys; equal when their raw encodings are equal.

    Build it with :meth:`from_keys` (which computes the agent id) or
    :meth:`from_json` (which checks it).
    """

    agent_id: str = field(validator=_check_agent_id)
    signing_key: Ed25519PublicKey
    agreement_key: X25519PublicKey
    mldsa_key: MLDSA65PublicKey | None = None
    mlkem_key: MLKEM768PublicKey | None = None

    @classmethod
    def from_keys(
        cls,
        signing_key: Ed25519PublicKey,
        agreement_key: X25519PublicKey,
        *,
        mldsa_key: MLDSA65PublicKey | None = None,
        mlkem_key: MLKEM768PublicKey | None = None,
    ) -> PublicIdentity:
        """The public identity of these keys, its agent id computed."""
        return cls(
            agent_id=agent_id_for(signing_key),
            signing_key=signing_key,
            agreement_key=agreement_key,
            mldsa_key=mldsa_key,
            mlkem_key=mlkem_key,
        )

    @property
    def post_quantum(self) -> bool:
        """Whether both post-quantum keys are present."""
        return self.mldsa_key is not None and self.mlkem_key is not None

    def raw(self) -> tuple[bytes, bytes, bytes | None, bytes | None]:
        """The raw encodings of the four keys (None where absent)."""
        return self._raw

    @functools.cached_property
    def _raw(self) -> tuple[bytes, bytes, bytes | None, bytes | None]:
        # Encoded once: a trust check compares the pinned keys at every message.
        return (
            self.signing_key.public_bytes_raw(),
            self.agreement_key.public_bytes_raw(),
            None if self.mldsa_key is None else self.mldsa_key.public_bytes_raw(),
            None if self.mlkem_key is None else self.mlkem_key.public_bytes_raw(),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PublicIdentity):
            return NotImplemented
        return self.raw() == other.raw()

    def __hash__(self) -> int:
        return hash(self.raw())

    def __repr__(self) -> str:
        return f"PublicIdentity(agent_id={self.agent_id!r}, post_quantum={self.post_quantum})"

    def verify(self, signature: bytes, data: bytes) -> None:
        """Check an Ed25519 signature (RFC 8032) by this agent; AuthenticationError if invalid."""
        try:
            self.signing_key.verify(signature, data)
        except InvalidSignature:
            raise AuthenticationError("signature invalid") from None

    def to_json(self) -> dict[str, str]:
        """``{"agentId", "signingKey", "agreementKey", "mldsa65Key"?, "mlkem768Key"?}``.

        Keys are base64url (RFC 7515 §2) of their raw encodings.
        """
        signing, agreement, mldsa, mlkem = self.raw()
        out = {
            _JSON_AGENT_ID: self.agent_id,
            _JSON_SIGNING: b64url_encode(signing),
            _JSON_AGREEMENT: b64url_encode(agreement),
        }
        if mldsa is not None:
            out[_JSON_MLDSA] = b64url_encode(mldsa)
        if mlkem is not None:
            out[_JSON_MLKEM] = b64url_encode(mlkem)
        return out

    @classmethod
    def from_json(cls, data: object, *, path: str = "identity") -> PublicIdentity:
        """Parse :meth:`to_json`'s form; unknown members are ignored.

        Raises DecodeError naming the field for malformed input, TrustError when
        ``agentId`` is not the fingerprint of ``signingKey``.
        """
        if not isinstance(data, Mapping):
            raise DecodeError("expected a JSON object", field=path)
        signing = _load_key(data, _JSON_SIGNING, Ed25519PublicKey, path)
        agreement = _load_key(data, _JSON_AGREEMENT, X25519PublicKey, path)
        mldsa = _load_key(data, _JSON_MLDSA, MLDSA65PublicKey, path, optional=True)
        mlkem = _load_key(data, _JSON_MLKEM, MLKEM768PublicKey, path, optional=True)
        claimed = data.get(_JSON_AGENT_ID)
        if not is_agent_id(claimed):
            raise DecodeError("missing or malformed agent id", field=f"{path}.{_JSON_AGENT_ID}")
        public = cls.from_keys(signing, agreement, mldsa_key=mldsa, mlkem_key=mlkem)
        if public.agent_id != claimed:
            raise TrustError(f"agent id {claimed} does not match its signing key")
        return public


def _load_key(
    data: Mapping[str, Any], name: str, key_type: Any, path: str, *, optional: bool = False
) -> Any:
    field_path = f"{path}.{name}"
    if name not in data:
        if optional:
            return None
        raise DecodeError("missing", field=field_path)
    raw = b64url_decode(data[name], field=field_path)
    try:
        return key_type.from_public_bytes(raw)
    except ValueError as exc:
        raise DecodeError("not a valid public key", field=field_path) from exc


@frozen(kw_only=True, eq=False, repr=False)
class Identity:
    """An agent's private keys (key objects, never bytes) and its public identity.

    The repr shows the agent id only. Bytes leave only through
    :meth:`private_bytes_for_storage`.
    """

    signing_key: Ed25519PrivateKey
    agreement_key: X25519PrivateKey
    mldsa_key: MLDSA65PrivateKey | None = None
    mlkem_key: MLKEM768PrivateKey | None = None
    public: PublicIdentity = field(init=False)

    def __attrs_post_init__(self) -> None:
        # Computed once: deriving public keys costs a scalar multiplication each.
        public = PublicIdentity.from_keys(
            self.signing_key.public_key(),
            self.agreement_key.public_key(),
            mldsa_key=None if self.mldsa_key is None else self.mldsa_key.public_key(),
            mlkem_key=None if self.mlkem_key is None else self.mlkem_key.public_key(),
        )
        object.__setattr__(self, "public", public)

    @classmethod
    def generate(cls, *, post_quantum: bool = False) -> Identity:
        """Fresh keys from the OS CSPRNG; ``post_quantum`` adds ML-DSA-65 and ML-KEM-768."""
        return cls(
            signing_key=Ed25519PrivateKey.generate(),
            agreement_key=X25519PrivateKey.generate(),
            mldsa_key=MLDSA65PrivateKey.generate() if post_quantum else None,
            mlkem_key=MLKEM768PrivateKey.generate() if post_quantum else None,
        )

    @property
    def agent_id(self) -> str:
        """The agent id: the fingerprint of the signing key."""
        return self.public.agent_id

    def sign(self, data: bytes) -> bytes:
        """An Ed25519 signature (RFC 8032 §5.1.6) over ``data``."""
        return self.signing_key.sign(data)

    def private_bytes_for_storage(self) -> bytes:
        """The secret keys, versioned (format in the module docstring). Keep them secret."""
        flags = (_FLAG_MLDSA if self.mldsa_key else 0) | (_FLAG_MLKEM if self.mlkem_key else 0)
        parts = [
            bytes([STORAGE_FORMAT_VERSION, flags]),
            self.signing_key.private_bytes_raw(),
            self.agreement_key.private_bytes_raw(),
        ]
        if self.mldsa_key is not None:
            parts.append(self.mldsa_key.private_bytes_raw())
        if self.mlkem_key is not None:
            parts.append(self.mlkem_key.private_bytes_raw())
        return b"".join(parts)

    @classmethod
    def from_storage_bytes(cls, data: bytes) -> Identity:
        """Load :meth:`private_bytes_for_storage`'s output; DecodeError on any malformed input."""
        field_name = "identity storage"
        if len(data) < 2:
            raise DecodeError("truncated", field=field_name)
        version, flags = data[0], data[1]
        if version != STORAGE_FORMAT_VERSION:
            raise DecodeError(f"unknown format version {version}", field=field_name)
        if flags & ~(_FLAG_MLDSA | _FLAG_MLKEM):
            raise DecodeError("unknown flags", field=field_name)
        names = ["ed25519", "x25519"]
        names += ["mldsa65"] if flags & _FLAG_MLDSA else []
        names += ["mlkem768"] if flags & _FLAG_MLKEM else []
        if len(data) != 2 + sum(_SEED_LENGTHS[n] for n in names):
            raise DecodeError("wrong length", field=field_name)
        seeds: dict[str, bytes] = {}
        offset = 2
        for name in names:
            seeds[name] = data[offset : offset + _SEED_LENGTHS[name]]
            offset += _SEED_LENGTHS[name]
        try:
            return cls(
                signing_key=Ed25519PrivateKey.from_private_bytes(seeds["ed25519"]),
                agreement_key=X25519PrivateKey.from_private_bytes(seeds["x25519"]),
                mldsa_key=_maybe(MLDSA65PrivateKey, seeds.get("mldsa65")),
                mlkem_key=_maybe(MLKEM768PrivateKey, seeds.get("mlkem768")),
            )
        except ValueError as exc:
            raise DecodeError("invalid key material", field=field_name) from exc

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Identity):
            return NotImplemented
        return hmac.compare_digest(
            self.private_bytes_for_storage(), other.private_bytes_for_storage()
        )

    def __hash__(self) -> int:
        return hash(self.public)

    def __repr__(self) -> str:
        return f"Identity(agent_id={self.agent_id!r}, post_quantum={self.public.post_quantum})"


def _maybe(key_type: Any, seed: bytes | None) -> Any:
    return None if seed is None else key_type.from_seed_bytes(seed)
