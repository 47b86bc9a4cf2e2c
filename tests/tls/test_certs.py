"""Certificates from identities, key files, hostile certificates and headers, the CLI."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from sealwire.binding import Negotiation
from sealwire.cli import main
from sealwire.config import init_home
from sealwire.errors import DecodeError
from sealwire.identity import Identity
from sealwire_tls import (
    AGENT_URI_PREFIX,
    certificate_agent_id,
    certificate_key,
    fingerprint,
    grpc_root_pem,
    key_files,
    parse_certificate,
    self_signed_certificate,
    spki_sha256,
)
from sealwire_tls._channel import (
    from_b64url,
    negotiation_header,
    parse_negotiation_header,
)


def test_self_signed_certificate_is_the_identity() -> None:
    identity = Identity.generate()
    cert = self_signed_certificate(identity)
    der = cert.public_bytes(Encoding.DER)
    assert self_signed_certificate(identity).public_bytes(Encoding.DER) == der  # deterministic
    assert certificate_agent_id(parse_certificate(der)) == identity.agent_id
    assert certificate_key(cert).public_bytes_raw() == identity.public.raw()[0]
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert AGENT_URI_PREFIX + identity.agent_id in names.get_values_for_type(
        x509.UniformResourceIdentifier
    )
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    cert.verify_directly_issued_by(cert)  # a valid self-signature
    other = self_signed_certificate(Identity.generate())
    assert fingerprint(other.public_bytes(Encoding.DER)) != fingerprint(der)


def test_spki_pin_is_sha256_of_the_subject_public_key_info() -> None:
    import hashlib

    identity = Identity.generate()
    spki = (
        self_signed_certificate(identity)
        .public_key()
        .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    assert spki_sha256(identity.signing_key.public_key()) == hashlib.sha256(spki).digest()


def test_a_certificate_with_another_key_type_names_no_agent() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([])
    import datetime

    from cryptography.hazmat.primitives import hashes

    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(datetime.datetime(2025, 1, 1))
        .not_valid_after(datetime.datetime(2030, 1, 1)).sign(key, hashes.SHA256())
    )  # fmt: skip
    with pytest.raises(DecodeError):
        certificate_key(cert)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=600))
def test_hostile_certificates_raise_decode_error_only(blob: bytes) -> None:
    with contextlib.suppress(DecodeError):
        certificate_key(parse_certificate(blob))


def test_hostile_certificate_mutations_never_escape() -> None:
    der = bytearray(self_signed_certificate(Identity.generate()).public_bytes(Encoding.DER))
    for i in range(len(der)):  # every byte
        mutated = bytes(der[:i]) + bytes([der[i] ^ 0x55]) + bytes(der[i + 1 :])
        with contextlib.suppress(DecodeError):
            certificate_key(parse_certificate(mutated))
    with pytest.raises(DecodeError):
        parse_certificate(b"0" * 20_000)


def test_key_files_are_private_and_removed() -> None:
    identity = Identity.generate()
    with key_files(identity, [self_signed_certificate(identity)]) as (cert, key):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(key)).st_mode) == 0o700
        assert b"PRIVATE KEY" in Path(key).read_bytes()
        assert b"CERTIFICATE" in Path(cert).read_bytes()
    assert not os.path.exists(key) and not os.path.exists(os.path.dirname(key))


uris = st.text(alphabet="abcdefghijklmnopqrstuvwxyz:0123456789", max_size=40)


@settings(max_examples=100, deadline=None)
@given(uris, st.lists(uris, max_size=5), st.lists(uris, max_size=5))
def test_negotiation_header_round_trip(chosen: str, mine: list[str], theirs: list[str]) -> None:
    negotiation = Negotiation(chosen=chosen, initiator_offers=tuple(mine),
                              responder_offers=tuple(theirs))  # fmt: skip
    assert parse_negotiation_header(negotiation_header(negotiation)) == negotiation


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_hostile_negotiation_headers_raise_decode_error_only(value: str) -> None:
    with contextlib.suppress(DecodeError):
        parse_negotiation_header(value)
    with pytest.raises(DecodeError):
        from_b64url("A" * 70_000, field="x")


def test_cli_exports_the_certificate_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    identity = init_home(home, name="cli-agent")
    out = tmp_path / "out"
    assert main(["--home", str(home), "tls", "cert", "--out", str(out), "--key"]) == 0
    cert = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    assert certificate_agent_id(cert) == identity.agent_id
    assert stat.S_IMODE(os.stat(out / "key.pem").st_mode) == 0o600
    err = capsys.readouterr().err
    assert identity.agent_id in err and "--pinnedpubkey sha256//" in err
    assert main(["--home", str(home), "tls", "cert", "--key"]) == 2  # a key is never printed
    assert main(["--home", str(home), "tls", "cert"]) == 0
    assert "BEGIN CERTIFICATE" in capsys.readouterr().out


def test_cli_exports_the_grpc_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    identity = init_home(home, name="cli-agent")
    capsys.readouterr()
    assert main(["--home", str(home), "tls", "grpc-root"]) == 0
    assert capsys.readouterr().out.encode() == grpc_root_pem(identity)
    assert (
        main(["--home", str(home), "--json", "tls", "grpc-root", "--out", str(tmp_path / "r")]) == 0
    )
    shown = json.loads(capsys.readouterr().out)
    assert shown == {"agent_id": identity.agent_id, "root": str(tmp_path / "r")}
    root = x509.load_pem_x509_certificate((tmp_path / "r").read_bytes())
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
