"""DTLS 1.2 interoperability with an independent implementation: Debian's ``openssl``.

The binding's engine runs on the OpenSSL inside ``cryptography``'s wheel (4.x);
``openssl s_client -dtls1_2`` and ``openssl s_server -dtls1_2`` are Debian's
OpenSSL 3.0 binary: another build, another version. Each run is mutual: the
openssl side presents a DTLS certificate made the binding's way (a P-256 key
issued by an agent's Ed25519 identity) and verifies ours against a CA
certificate of our identity key (``-verify_return_error``); we check theirs
with :func:`check_dtls_certificate` against their identity. Bytes go both
ways. The ``s_client`` run goes through a relay that loses and reorders
handshake datagrams both ways. ``openssl`` must be installed
(scripts/install-servers.sh): these tests fail without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import shutil
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lossy_udp import LossyProxy
from waiting import until

from sealwire.identity import Identity
from sealwire.transport import DatagramEndpoint, connect_datagram, serve_datagram
from sealwire_tls._dtls import (
    DTLS_1_2,
    CookieJar,
    DtlsEngine,
    dtls_context,
    split_records,
)
from sealwire_tls._dtls_certs import check_dtls_certificate, dtls_certificate

OPENSSL_TIMEOUT = 60.0
"""Seconds one exchange with openssl may take (retransmission timers start at 1 s)."""


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def identity_ca(identity: Identity) -> x509.Certificate:
    """A CA certificate of the identity key: lets openssl verify a DTLS certificate."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sealwire"),
            x509.NameAttribute(NameOID.COMMON_NAME, identity.agent_id),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(identity.signing_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(days=1))
        .not_valid_after(_now() + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(identity.signing_key, None)
    )


def openssl_files(folder: Path, them: Identity, us: Identity) -> tuple[Path, Path, Path]:
    """(cert, key (0600), CA of our identity) for the openssl side."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert_path, key_path, ca_path = folder / "cert.pem", folder / "key.pem", folder / "ca.pem"
    cert_path.write_bytes(
        dtls_certificate(them, key, _now()).public_bytes(serialization.Encoding.PEM)
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    ca_path.write_bytes(identity_ca(us).public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path, ca_path


def our_context(identity: Identity, *, server: bool) -> object:
    key = ec.generate_private_key(ec.SECP256R1())
    return dtls_context(
        server=server,
        versions=(DTLS_1_2,),
        certificate=dtls_certificate(identity, key, _now()),
        key=key,
        cookies=CookieJar(lambda: 0.0) if server else None,
    )


class Raw:
    """Our engine over an endpoint, raw bytes (openssl speaks no Sealwire framing)."""

    def __init__(self, endpoint: DatagramEndpoint, engine: DtlsEngine) -> None:
        self.endpoint, self.engine = endpoint, engine
        self.received = bytearray()

    async def flush(self) -> None:
        for datagram in self.engine.datagrams():
            await self.endpoint.send(datagram)

    async def step(self) -> None:
        timer = self.engine.timeout()
        try:
            datagram = await asyncio.wait_for(self.endpoint.receive(), min(timer or 1.0, 1.0))
        except TimeoutError:
            if self.engine.timeout() is not None:
                self.engine.handle_timeout()
            await self.flush()
            return
        for record in split_records(datagram):
            data = self.engine.receive_record(record)
            if data:
                self.received += data
        await self.flush()

    async def handshake(self) -> None:
        await self.flush()
        while not self.engine.handshake_done:
            await self.step()

    async def until_received(self, needle: bytes) -> None:
        while needle not in self.received:
            await self.step()

    async def send(self, data: bytes) -> None:
        self.engine.send(data)
        await self.flush()


def _openssl() -> str:
    binary = shutil.which("openssl")
    assert binary is not None, "openssl is not installed (scripts/install-servers.sh)"
    return binary


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
    await process.wait()


async def _read_until(stream: asyncio.StreamReader, needle: bytes) -> bytes:
    seen = bytearray()
    while needle not in seen:
        chunk = await stream.read(4096)
        assert chunk, f"openssl ended before printing {needle!r}: {bytes(seen)[-400:]!r}"
        seen += chunk
    return bytes(seen)


async def test_openssl_s_client_with_loss_and_reordering(tmp_path: Path) -> None:
    """s_client -> lossy relay -> our server: cookie exchange, retransmissions, bytes both ways."""
    ours, theirs = Identity.generate(), Identity.generate()
    cert, key, ca = openssl_files(tmp_path, theirs, ours)
    context = our_context(ours, server=True)
    sessions: asyncio.Queue[Raw | BaseException] = asyncio.Queue()

    async def serve_one(endpoint: DatagramEndpoint) -> None:
        try:
            engine = None
            while engine is None:
                datagram = await endpoint.receive()
                engine, replies = DtlsEngine.accept(
                    context,  # type: ignore[arg-type]
                    datagram,
                    endpoint.peer_address.encode(),
                )
                for reply in replies:
                    await endpoint.send(reply)
            raw = Raw(endpoint, engine)
            await raw.handshake()
            check_dtls_certificate(raw.engine.peer_certificate(), theirs.public, _now())
            sessions.put_nowait(raw)
            await raw.until_received(b"hello from openssl\n")
            await raw.send(b"hello from sealwire\n")
            await raw.until_received(b"bye\n")
        except BaseException as exc:
            sessions.put_nowait(exc)
            raise

    def fault(direction: str, n: int, datagram: bytes) -> str:
        if direction == "s2c" and n == 1:
            return "drop"  # our first server flight (ServerHello...): s_client resends
        if direction == "c2s" and n == 2:
            return "hold"  # reordered with the next client datagram
        if direction == "s2c" and n == 3:
            return "hold"
        return "pass"

    listener = await serve_datagram("udp://127.0.0.1:0", serve_one)
    async with listener:
        host, port = listener.url.removeprefix("udp://").rsplit(":", 1)
        proxy = LossyProxy((host, int(port)), fault)
        relay = (await proxy.start()).removeprefix("udp://")
        process = await asyncio.create_subprocess_exec(
            _openssl(), "s_client", "-dtls1_2", "-connect", relay,
            "-cert", str(cert), "-key", str(key), "-CAfile", str(ca),
            "-verify", "2", "-verify_return_error", "-quiet",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert process.stdin is not None and process.stdout is not None
            session = await asyncio.wait_for(sessions.get(), OPENSSL_TIMEOUT)
            assert isinstance(session, Raw), session
            assert session.engine.version == "DTLSv1.2"
            assert session.engine.cipher.startswith("ECDHE-ECDSA-")
            process.stdin.write(b"hello from openssl\n")
            await process.stdin.drain()
            await asyncio.wait_for(
                _read_until(process.stdout, b"hello from sealwire\n"), OPENSSL_TIMEOUT
            )
            process.stdin.write(b"bye\n")
            await process.stdin.drain()
            await until(lambda: b"bye\n" in session.received, "our side got bye", OPENSSL_TIMEOUT)
            assert ("s2c", 1, "drop") in proxy.log
        finally:
            await _stop(process)
            proxy.close()


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_openssl_s_server_with_cookies(tmp_path: Path) -> None:
    """Our client -> s_server -listen (HelloVerifyRequest first): bytes both ways."""
    ours, theirs = Identity.generate(), Identity.generate()
    cert, key, ca = openssl_files(tmp_path, theirs, ours)
    port = _free_udp_port()
    process = await asyncio.create_subprocess_exec(
        _openssl(), "s_server", "-dtls1_2", "-listen", "-accept", f"127.0.0.1:{port}",
        "-cert", str(cert), "-key", str(key), "-CAfile", str(ca),
        "-Verify", "2", "-verify_return_error", "-naccept", "1",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    endpoint = None
    try:
        assert process.stdin is not None and process.stdout is not None
        await asyncio.wait_for(_read_until(process.stdout, b"ACCEPT"), OPENSSL_TIMEOUT)
        endpoint = await connect_datagram(f"udp://127.0.0.1:{port}")
        raw = Raw(endpoint, DtlsEngine.client(our_context(ours, server=False)))  # type: ignore[arg-type]
        await asyncio.wait_for(raw.handshake(), OPENSSL_TIMEOUT)
        check_dtls_certificate(raw.engine.peer_certificate(), theirs.public, _now())
        assert raw.engine.version == "DTLSv1.2"
        await raw.send(b"hello from sealwire\n")
        await asyncio.wait_for(
            _read_until(process.stdout, b"hello from sealwire\n"), OPENSSL_TIMEOUT
        )
        process.stdin.write(b"hello from openssl\n")
        await process.stdin.drain()
        await asyncio.wait_for(raw.until_received(b"hello from openssl\n"), OPENSSL_TIMEOUT)
    finally:
        if endpoint is not None:
            with contextlib.suppress(Exception):
                await endpoint.close()
        await _stop(process)
