"""Pre-shared keys (RFC 9420 §8.4): PreSharedKeyID and the ``psk_secret`` chain."""

from __future__ import annotations

import enum
from collections.abc import Sequence

from attrs import frozen

from sealwire_mls.codec import Reader, Writer
from sealwire_mls.crypto import CipherSuite
from sealwire_mls.errors import MLSDecodeError, MLSLocalError, MLSProtocolError

__all__ = ["PSKType", "PreSharedKeyID", "ResumptionPSKUsage", "psk_secret"]

#: PSKLabel carries ``uint16 index, count``: more PSKs cannot be labelled.
MAX_PSKS = 0xFFFF


class PSKType(enum.IntEnum):
    """``enum { reserved(0), external(1), resumption(2), (255) } PSKType;`` (§8.4)."""

    EXTERNAL = 1
    RESUMPTION = 2


class ResumptionPSKUsage(enum.IntEnum):
    """``enum { reserved(0), application(1), reinit(2), branch(3), (255) }`` (§8.4)."""

    APPLICATION = 1
    REINIT = 2
    BRANCH = 3


@frozen(kw_only=True)
class PreSharedKeyID:
    """Identifies one PSK (§8.4). External PSKs set ``psk_id``; resumption PSKs
    set ``usage``, ``psk_group_id`` and ``psk_epoch``."""

    psktype: PSKType
    psk_nonce: bytes
    psk_id: bytes = b""
    usage: ResumptionPSKUsage = ResumptionPSKUsage.APPLICATION
    psk_group_id: bytes = b""
    psk_epoch: int = 0

    @classmethod
    def external(cls, psk_id: bytes, psk_nonce: bytes) -> PreSharedKeyID:
        """An external PSK id."""
        return cls(psktype=PSKType.EXTERNAL, psk_id=psk_id, psk_nonce=psk_nonce)

    @classmethod
    def resumption(
        cls, usage: ResumptionPSKUsage, group_id: bytes, epoch: int, psk_nonce: bytes
    ) -> PreSharedKeyID:
        """A resumption PSK id (a prior epoch's ``resumption_psk``)."""
        return cls(
            psktype=PSKType.RESUMPTION,
            usage=usage,
            psk_group_id=group_id,
            psk_epoch=epoch,
            psk_nonce=psk_nonce,
        )

    # struct {
    #   PSKType psktype;
    #   select (PreSharedKeyID.psktype) {
    #     case external:
    #       opaque psk_id<V>;
    #     case resumption:
    #       ResumptionPSKUsage usage;
    #       opaque psk_group_id<V>;
    #       uint64 psk_epoch;
    #   };
    #   opaque psk_nonce<V>;
    # } PreSharedKeyID;
    def encode(self, w: Writer) -> None:
        """Append the §8.4 encoding."""
        w.uint8(self.psktype)
        if self.psktype is PSKType.EXTERNAL:
            w.opaque(self.psk_id)
        else:
            w.uint8(self.usage).opaque(self.psk_group_id).uint64(self.psk_epoch)
        w.opaque(self.psk_nonce)

    @classmethod
    def decode(cls, r: Reader) -> PreSharedKeyID:
        """Read one PreSharedKeyID; unknown PSK types or usages are decode errors."""
        psktype = r.uint8("PreSharedKeyID.psktype")
        if psktype == PSKType.EXTERNAL:
            psk_id = r.opaque("PreSharedKeyID.psk_id")
            return cls.external(psk_id, r.opaque("PreSharedKeyID.psk_nonce"))
        if psktype != PSKType.RESUMPTION:
            raise MLSDecodeError(f"unknown PSK type {psktype}", field="PreSharedKeyID.psktype")
        usage = r.uint8("PreSharedKeyID.usage")
        if usage not in ResumptionPSKUsage._value2member_map_:
            raise MLSDecodeError(f"unknown usage {usage}", field="PreSharedKeyID.usage")
        group_id = r.opaque("PreSharedKeyID.psk_group_id")
        epoch = r.uint64("PreSharedKeyID.psk_epoch")
        nonce = r.opaque("PreSharedKeyID.psk_nonce")
        return cls.resumption(ResumptionPSKUsage(usage), group_id, epoch, nonce)

    def to_bytes(self) -> bytes:
        """The encoded PreSharedKeyID."""
        w = Writer()
        self.encode(w)
        return w.getvalue()

    def check_nonce(self, suite: CipherSuite) -> None:
        """§8.4: ``psk_nonce`` MUST be ``KDF.Nh`` bytes long."""
        if len(self.psk_nonce) != suite.Nh:
            raise MLSProtocolError("psk_nonce length is not KDF.Nh")


def psk_secret(suite: CipherSuite, psks: Sequence[tuple[PreSharedKeyID, bytes]]) -> bytes:
    """The §8.4 ``psk_secret`` for (id, psk) pairs in order; all zeros if none.

    ``psk_extracted_[i] = KDF.Extract(0, psk_[i])``;
    ``psk_input_[i] = ExpandWithLabel(psk_extracted_[i], "derived psk", PSKLabel, KDF.Nh)``;
    ``psk_secret_[i] = KDF.Extract(psk_input_[i-1], psk_secret_[i-1])``.
    """
    count = len(psks)
    if count > MAX_PSKS:
        raise MLSLocalError("too many PSKs")
    zero = bytes(suite.Nh)
    secret = zero
    for index, (psk_id, psk) in enumerate(psks):
        extracted = suite.kdf_extract(zero, psk)
        # struct { PreSharedKeyID id; uint16 index; uint16 count; } PSKLabel;
        w = Writer()
        psk_id.encode(w)
        label = w.uint16(index).uint16(count).getvalue()
        psk_input = suite.expand_with_label(extracted, b"derived psk", label, suite.Nh)
        secret = suite.kdf_extract(psk_input, secret)
    return secret
