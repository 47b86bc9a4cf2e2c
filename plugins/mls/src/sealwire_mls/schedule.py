"""The MLS key schedule (RFC 9420 §8): GroupContext, epoch secrets, exporter.

::

                     init_secret_[n-1]
                           |
                           |
                           V
    commit_secret --> KDF.Extract
                           |
                           V
                   ExpandWithLabel(., "joiner", GroupContext_[n], KDF.Nh)
                           |
                           V
                      joiner_secret
                           |
                           V
    psk_secret (or 0) --> KDF.Extract
                           |
                           +--> DeriveSecret(., "welcome") = welcome_secret
                           |
                           V
                   ExpandWithLabel(., "epoch", GroupContext_[n], KDF.Nh)
                           |
                           V
                      epoch_secret
                           |
                           +--> DeriveSecret(., <label>) = <secret>  (Table 4)
                           |
                           V
                     DeriveSecret(., "init")
                           |
                           V
                     init_secret_[n]

``KDF.Extract`` takes its salt from the top and its IKM from the left.
"""

from __future__ import annotations

from attrs import field, frozen

from sealwire_mls.codec import Reader, Writer, decode_exact
from sealwire_mls.crypto import CipherSuite, cipher_suite
from sealwire_mls.errors import MLSDecodeError
from sealwire_mls.extensions import Extension, decode_extensions, encode_extensions

__all__ = [
    "MLS10",
    "EpochSecrets",
    "GroupContext",
    "external_init_receive",
    "external_init_send",
    "initial_epoch_secrets",
    "joiner_secret",
    "key_schedule",
    "mls_exporter",
    "next_epoch_secrets",
    "welcome_secret",
]

#: ``ProtocolVersion mls10 = 1`` (§6).
MLS10 = 1

_EXTERNAL_INIT_LABEL = b"MLS 1.0 external init secret"


@frozen(kw_only=True)
class GroupContext:
    """The group's shared state summary (§8.1)."""

    cipher_suite: int
    group_id: bytes
    epoch: int
    tree_hash: bytes
    confirmed_transcript_hash: bytes
    extensions: tuple[Extension, ...] = ()
    version: int = MLS10

    # struct {
    #     ProtocolVersion version = mls10;
    #     CipherSuite cipher_suite;
    #     opaque group_id<V>;
    #     uint64 epoch;
    #     opaque tree_hash<V>;
    #     opaque confirmed_transcript_hash<V>;
    #     Extension extensions<V>;
    # } GroupContext;
    def encode(self, w: Writer) -> None:
        """Append the §8.1 encoding."""
        w.uint16(self.version).uint16(self.cipher_suite).opaque(self.group_id)
        w.uint64(self.epoch).opaque(self.tree_hash).opaque(self.confirmed_transcript_hash)
        encode_extensions(w, self.extensions)

    @classmethod
    def decode(cls, r: Reader) -> GroupContext:
        """Read one GroupContext; only ``mls10`` is accepted."""
        version = r.uint16("GroupContext.version")
        if version != MLS10:
            raise MLSDecodeError(f"unsupported version {version}", field="GroupContext.version")
        return cls(
            version=version,
            cipher_suite=r.uint16("GroupContext.cipher_suite"),
            group_id=r.opaque("GroupContext.group_id"),
            epoch=r.uint64("GroupContext.epoch"),
            tree_hash=r.opaque("GroupContext.tree_hash"),
            confirmed_transcript_hash=r.opaque("GroupContext.confirmed_transcript_hash"),
            extensions=decode_extensions(r, "GroupContext.extensions"),
        )

    def to_bytes(self) -> bytes:
        """The encoded GroupContext."""
        w = Writer()
        self.encode(w)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> GroupContext:
        """Decode exactly one GroupContext."""
        return decode_exact(data, cls.decode, "GroupContext")

    def suite(self) -> CipherSuite:
        """The group's :class:`CipherSuite`."""
        return cipher_suite(self.cipher_suite)


@frozen(kw_only=True)
class EpochSecrets:
    """The secrets of one epoch (§8, Table 4). Never shown in ``repr``."""

    joiner_secret: bytes = field(repr=False)
    welcome_secret: bytes = field(repr=False)
    epoch_secret: bytes = field(repr=False)
    sender_data_secret: bytes = field(repr=False)
    encryption_secret: bytes = field(repr=False)
    exporter_secret: bytes = field(repr=False)
    external_secret: bytes = field(repr=False)
    confirmation_key: bytes = field(repr=False)
    membership_key: bytes = field(repr=False)
    resumption_psk: bytes = field(repr=False)
    epoch_authenticator: bytes = field(repr=False)
    init_secret: bytes = field(repr=False)

    def external_pub(self, suite: CipherSuite) -> bytes:
        """``external_pub``: the public half of ``KEM.DeriveKeyPair(external_secret)`` (§8.3)."""
        return suite.derive_key_pair(self.external_secret)[1]

    def external_priv(self, suite: CipherSuite) -> bytes:
        """The private half of ``KEM.DeriveKeyPair(external_secret)`` (§8.3)."""
        return suite.derive_key_pair(self.external_secret)[0]


def joiner_secret(
    suite: CipherSuite, init_secret: bytes, commit_secret: bytes, group_context: bytes
) -> bytes:
    """``ExpandWithLabel(Extract(init_secret, commit_secret), "joiner", GroupContext, Nh)``."""
    prk = suite.kdf_extract(init_secret, commit_secret)
    return suite.expand_with_label(prk, b"joiner", group_context, suite.Nh)


def welcome_secret(suite: CipherSuite, joiner: bytes, psk_secret: bytes | None) -> bytes:
    """``DeriveSecret(Extract(joiner_secret, psk_secret), "welcome")`` (§8); None means zeros."""
    member_prk = suite.kdf_extract(joiner, psk_secret or bytes(suite.Nh))
    return suite.derive_secret(member_prk, b"welcome")


_EPOCH_LABELS = {
    "sender_data_secret": b"sender data",
    "encryption_secret": b"encryption",
    "exporter_secret": b"exporter",
    "external_secret": b"external",
    "confirmation_key": b"confirm",
    "membership_key": b"membership",
    "resumption_psk": b"resumption",
    "epoch_authenticator": b"authentication",
    "init_secret": b"init",
}


def key_schedule(
    suite: CipherSuite,
    joiner: bytes,
    psk_secret: bytes | None,
    group_context: bytes,
) -> EpochSecrets:
    """The epoch's secrets from ``joiner_secret`` (§8); ``psk_secret`` None means zeros.

    ``group_context`` is the encoded GroupContext of the new epoch.
    """
    member_prk = suite.kdf_extract(joiner, psk_secret or bytes(suite.Nh))
    epoch_secret = suite.expand_with_label(member_prk, b"epoch", group_context, suite.Nh)
    welcome = suite.derive_secret(member_prk, b"welcome")
    return _from_epoch_secret(suite, epoch_secret, joiner, welcome)


def initial_epoch_secrets(suite: CipherSuite, epoch_secret: bytes) -> EpochSecrets:
    """Epoch 0 of a new group (§11): the secrets derived from a fresh ``epoch_secret``.

    There is no joiner or welcome secret in epoch 0 (both are empty).
    """
    return _from_epoch_secret(suite, epoch_secret, b"", b"")


def _from_epoch_secret(
    suite: CipherSuite, epoch_secret: bytes, joiner: bytes, welcome: bytes
) -> EpochSecrets:
    derived = {name: suite.derive_secret(epoch_secret, lbl) for name, lbl in _EPOCH_LABELS.items()}
    return EpochSecrets(
        joiner_secret=joiner, welcome_secret=welcome, epoch_secret=epoch_secret, **derived
    )


def mls_exporter(
    suite: CipherSuite, exporter_secret: bytes, label: bytes, context: bytes, length: int
) -> bytes:
    """MLS-Exporter (§8.5):
    ``ExpandWithLabel(DeriveSecret(exporter_secret, Label), "exported", Hash(Context), Length)``.
    """
    secret = suite.derive_secret(exporter_secret, label)
    return suite.expand_with_label(secret, b"exported", suite.hash(context), length)


def external_init_send(suite: CipherSuite, external_pub: bytes) -> tuple[bytes, bytes]:
    """The joiner's side of external init (§8.3): ``(kem_output, init_secret)``."""
    kem_output, context = suite.hpke().setup_s(external_pub, b"")
    return kem_output, context.export(_EXTERNAL_INIT_LABEL, suite.Nh)


def external_init_receive(suite: CipherSuite, external_priv: bytes, kem_output: bytes) -> bytes:
    """The group's side of external init (§8.3): the new epoch's ``init_secret``."""
    context = suite.hpke().setup_r(kem_output, external_priv, b"")
    return context.export(_EXTERNAL_INIT_LABEL, suite.Nh)


def next_epoch_secrets(
    suite: CipherSuite,
    init_secret: bytes,
    commit_secret: bytes,
    group_context: GroupContext,
    psk_secret: bytes | None = None,
) -> EpochSecrets:
    """Convenience: run §8 from the previous ``init_secret`` to this epoch's secrets."""
    context = group_context.to_bytes()
    joiner = joiner_secret(suite, init_secret, commit_secret, context)
    return key_schedule(suite, joiner, psk_secret, context)
