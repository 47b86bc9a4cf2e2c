"""``sealwire tls cert``: export the agent's TLS certificate (and key) for other tools.

Prints the certificate chain as PEM, or with ``--out DIR`` writes
``DIR/cert.pem`` (and with ``--key`` ``DIR/key.pem``, mode 0600), then its
SHA-256 fingerprint and the public-key pin curl takes as ``--pinnedpubkey``.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from sealwire.components import CliCommand
from sealwire.config import default_home, open_home
from sealwire_tls._binding import agent_certificate_chain
from sealwire_tls._certs import fingerprint, pem, private_key_pem, spki_sha256

__all__ = ["tls_command"]


def _configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="tls_command", required=True, metavar="ACTION")
    cert = sub.add_parser("cert", help="export this agent's certificate (made from its identity)")
    cert.add_argument("--out", help="folder to write cert.pem (and key.pem) into")
    cert.add_argument("--key", action="store_true", help="also write the private key (0600)")
    cert.add_argument("--host", action="append", help="a name the certificate is valid for")


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, mode)


def _run(args: argparse.Namespace) -> int:
    home = Path(args.home) if getattr(args, "home", None) else default_home()
    config, identity, store = open_home(home)
    store.close()
    options = dict(config.bindings.get("tls", {}))
    if args.host:
        options["hosts"] = args.host
    chain, _ca = agent_certificate_chain(identity, options)
    if args.key and not args.out:
        print("sealwire: error: --key needs --out (a key is never printed)", file=sys.stderr)
        return 2
    if args.out:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / "cert.pem", pem(chain), 0o644)
        if args.key:
            _write(folder / "key.pem", private_key_pem(identity), 0o600)
        print(f"wrote {folder / 'cert.pem'}" + (f" and {folder / 'key.pem'}" if args.key else ""))
    else:
        sys.stdout.write(pem(chain).decode())
    digest = fingerprint(chain[0].public_bytes(Encoding.DER))
    pin = base64.b64encode(spki_sha256(identity.public.signing_key)).decode()
    print(f"agent: {identity.agent_id}", file=sys.stderr)
    print(f"sha256 fingerprint: {digest.hex(':').upper()}", file=sys.stderr)
    print(f"curl --pinnedpubkey sha256//{pin}", file=sys.stderr)
    return 0


def tls_command() -> CliCommand:
    return CliCommand(
        name="tls",
        help="TLS binding tools: export the agent's certificate",
        configure=_configure,
        run=_run,
    )
