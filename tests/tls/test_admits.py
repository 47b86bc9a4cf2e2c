"""``TlsServer.admits``: the trust-anchor check HTTP/3 does without OpenSSL.

A client leaf is admitted when it is exactly an anchor (configured, enrolled)
or directly issued by the operator's CA, within its validity dates (and the
CA within its own); anything else - an unknown self-signed certificate, one
issued by another CA, an expired one, bytes that are no certificate - is not.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from sealwire.identity import Identity
from sealwire.testing.contract import make_party
from sealwire_tls import TlsBinding, TlsServer, issue_certificate, pem, self_signed_certificate

NOW = datetime.datetime(2026, 6, 1, tzinfo=datetime.UTC)


def _ca(name: str, days: int = 365) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = NOW - datetime.timedelta(days=1)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return cert, key


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.DER)


@pytest.fixture
def ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return _ca("operator CA")


def _server(
    tmp_path: Path, allowed: list[x509.Certificate], ca: x509.Certificate | None
) -> TlsServer:
    options: dict[str, object] = {}
    if allowed:
        (tmp_path / "allowed.pem").write_bytes(pem(allowed))
        options["client_certificates"] = [str(tmp_path / "allowed.pem")]
    party = make_party(TlsBinding, listen=["https://127.0.0.1:1"], options=options)
    binding = party.binding
    assert isinstance(binding, TlsBinding)
    uri = TlsBinding.info.uri
    return TlsServer(lambda: binding.context, [binding.certificate], binding_uri=uri, ca=ca,
                     enroll=False)  # fmt: skip


def test_configured_anchors_are_admitted_exactly(tmp_path: Path) -> None:
    pinned = self_signed_certificate(Identity.generate())
    server = _server(tmp_path, [pinned], None)
    assert server.admits(_der(pinned), NOW)
    assert not server.admits(_der(self_signed_certificate(Identity.generate())), NOW)
    assert not server.admits(b"not a certificate", NOW)
    assert not server.admits(_der(pinned)[:-1], NOW)
    assert not server.enroll_on


def test_certificates_directly_issued_by_the_operator_ca(
    tmp_path: Path, ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
) -> None:
    server = _server(tmp_path, [], ca[0])
    issued = issue_certificate(Identity.generate(), ca[0], ca[1])
    assert server.admits(_der(issued), NOW)
    # Outside the validity dates (the issued certificate's are the CA's).
    assert not server.admits(_der(issued), NOW + datetime.timedelta(days=400))
    assert not server.admits(_der(issued), NOW - datetime.timedelta(days=30))
    other = _ca("another CA")
    assert not server.admits(_der(issue_certificate(Identity.generate(), *other)), NOW)
    assert not server.admits(_der(self_signed_certificate(Identity.generate())), NOW)
    # Without an operator CA, a CA-issued certificate is no anchor.
    assert not _server(tmp_path, [], None).admits(_der(issued), NOW)


def test_default_clock_is_now(tmp_path: Path) -> None:
    pinned = self_signed_certificate(Identity.generate())
    assert _server(tmp_path, [pinned], None).admits(_der(pinned))
