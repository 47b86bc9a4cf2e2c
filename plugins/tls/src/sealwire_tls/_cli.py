"""``sealwire tls cert``: export the agent's TLS certificate (and key) for other tools.

Prints the certificate chain as PEM, or with ``--out DIR`` writes
``DIR/cert.pem`` (and with ``--key`` ``DIR/key.pem``, mode 0600), then its
SHA-256 fingerprint and the public-key pin curl takes as ``--pinnedpubkey``.
``sealwire tls grpc-root`` prints the root a gRPC client verifies the endpoint
with when ``[bindings.tls] grpc = true``.
"""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

import click
from cryptography.hazmat.primitives.serialization import Encoding

from sealwire.cli.output import emit, note, state
from sealwire.components import CliCommand
from sealwire.config import open_home
from sealwire_tls._binding import agent_certificate_chain
from sealwire_tls._certs import fingerprint, pem, private_key_pem, spki_sha256
from sealwire_tls._grpc import grpc_root_pem

__all__ = ["tls_command"]


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, mode)


@click.group()
def tls() -> None:
    """TLS binding tools: export the agent's certificate."""


@tls.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write cert.pem (and key.pem) into.",
)
@click.option("--key", is_flag=True, help="Also write the private key (mode 0600; needs --out).")
@click.option("--host", multiple=True, help="A name the certificate is valid for (repeatable).")
def cert(out: Path | None, key: bool, host: tuple[str, ...]) -> None:
    """Export this agent's certificate (made from its identity).

    Prints the chain as PEM, or with --out writes DIR/cert.pem (and with --key
    DIR/key.pem); then, on stderr, its SHA-256 fingerprint and the public-key
    pin curl takes as --pinnedpubkey.
    """
    if key and out is None:
        raise click.UsageError("--key needs --out (a key is never printed)")
    config, identity, store = open_home(state().home, state().registry)
    store.close()
    options = dict(config.bindings.get("tls", {}))
    if host:
        options["hosts"] = list(host)
    chain, _ca = agent_certificate_chain(identity, options)
    digest = fingerprint(chain[0].public_bytes(Encoding.DER)).hex(":").upper()
    pin = base64.b64encode(spki_sha256(identity.public.signing_key)).decode()
    data = {"agent_id": identity.agent_id, "sha256": digest, "pinnedpubkey": f"sha256//{pin}"}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        _write(out / "cert.pem", pem(chain), 0o644)
        data["cert"] = str(out / "cert.pem")
        if key:
            _write(out / "key.pem", private_key_pem(identity), 0o600)
            data["key"] = str(out / "key.pem")
        wrote = f"wrote {out / 'cert.pem'}" + (f" and {out / 'key.pem'}" if key else "")
        emit(data, [wrote])
    elif state().json:
        emit({**data, "pem": pem(chain).decode()})
    else:
        sys.stdout.write(pem(chain).decode())
    if not state().json:
        note(f"agent: {identity.agent_id}")
        note(f"sha256 fingerprint: {digest}")
        note(f"curl --pinnedpubkey sha256//{pin}")


@tls.command("grpc-root")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="File to write.")
def grpc_root(out: Path | None) -> None:
    """Export the root certificate gRPC clients verify this agent's endpoint with.

    With [bindings.tls] grpc = true the endpoint presents clients without Ed25519
    (grpcio) an ECDSA certificate issued by this agent's identity; pass this PEM as
    grpc.ssl_channel_credentials(root_certificates=...). It holds public keys only.
    """
    _config, identity, store = open_home(state().home, state().registry)
    store.close()
    root = grpc_root_pem(identity)
    data = {"agent_id": identity.agent_id}
    if out is not None:
        _write(out, root, 0o644)
        emit({**data, "root": str(out)}, [f"wrote {out}"])
    elif state().json:
        emit({**data, "pem": root.decode()})
    else:
        sys.stdout.write(root.decode())


def tls_command() -> CliCommand:
    return CliCommand(tls)
