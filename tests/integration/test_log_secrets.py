"""No secret and no plaintext in any log line (issue 17.4).

A relay (``python -m sealwire_relay --log-level debug --log-format json``), Bob (a
sidecar in front of a plain a2a-sdk agent) and Alice (an agent), each its own
process logging at debug level as JSON lines, do a full exchange: a request over
Noise, one through the Signal mailbox, one to an MLS group. Then every line of
every log is searched for the identities' private keys, the store key, the
relay's key and Alice's relay bearer token (hex, base64, base64url) and for the
plaintext of the three requests.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
from ports import free_port
from waiting import until

from sealwire.identity import Identity
from sealwire.store import StoreKey

PARTY = Path(__file__).with_name("log_party.py")
# The three exchanges take a few seconds; generous for a loaded 2-core machine.
EXCHANGE_SECONDS = 150.0


def _forms(secret: bytes) -> list[str]:
    """The ways a secret could be written in a line: hex, base64 and base64url,
    padded or not (at least 12 characters of each, so a short one cannot match by chance)."""
    forms = [
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode(),
    ]
    return sorted({f.rstrip("=") for f in forms})


def _keys(identity_bytes: bytes) -> list[bytes]:
    """The storage blob, and each private key inside it, from the party's identity file."""
    identity = Identity.from_storage_bytes(identity_bytes)
    keys = [
        identity_bytes,
        identity.signing_key.private_bytes_raw(),
        identity.agreement_key.private_bytes_raw(),
    ]
    if identity.mlkem_key is not None:
        keys.append(identity.mlkem_key.private_bytes_raw())
    if identity.mldsa_key is not None:
        keys.append(identity.mldsa_key.private_bytes_raw())
    return keys


async def test_no_secret_or_plaintext_reaches_a_log_line(tmp_path: Path) -> None:
    raw_store_key = os.urandom(32)
    store_key = StoreKey.from_bytes(raw_store_key)
    key_text = store_key.export_for_file().decode().strip()
    texts = [f"plain-{name}-{os.urandom(6).hex()}" for name in ("noise", "mailbox", "group")]
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "SEALWIRE_STORE_KEY": key_text,
        "LOG_PARTY_TEXTS": " ".join(texts),
    }
    port = free_port()
    (tmp_path / "relay.toml").write_text(f"[relay]\nport = {port}\nidentity = 'relay.key'\n")
    relay_url = f"http://127.0.0.1:{port}"
    logs = {name: tmp_path / f"{name}.log" for name in ("relay", "bob", "alice")}
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, args: list[str], stdout: Path) -> subprocess.Popen[bytes]:
        with logs[name].open("wb") as err, stdout.open("wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=err, env=env, cwd=tmp_path)
        procs.append(proc)
        return proc

    try:
        start(
            "relay",
            [sys.executable, "-m", "sealwire_relay", "--config", str(tmp_path / "relay.toml"),
             "--log-level", "debug", "--log-format", "json"],
            tmp_path / "relay.out",
        )  # fmt: skip
        await until(lambda: _up(relay_url), "the relay", 60)
        bob_out = tmp_path / "bob.out"
        start("bob", [sys.executable, str(PARTY), "bob", str(tmp_path), relay_url], bob_out)
        await until(lambda: "ready" in bob_out.read_text(), "bob ready", 60)
        alice_out = tmp_path / "alice.out"
        alice = start(
            "alice", [sys.executable, str(PARTY), "alice", str(tmp_path), relay_url], alice_out
        )
        await until(lambda: alice.poll() is not None, "alice's exchanges", EXCHANGE_SECONDS)
        assert alice.returncode == 0, logs["alice"].read_text()[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)

    answers = alice_out.read_text()
    for text in texts:  # the exchanges did happen: each answer carries its request's text
        assert f"hello {text}" in answers

    secrets = [raw_store_key]
    for party in ("alice", "bob"):
        secrets += _keys((tmp_path / f"{party}.identity").read_bytes())
    secrets.append((tmp_path / "relay.key").read_bytes())
    token = (tmp_path / "alice.token").read_text()
    assert token  # Alice was logged in to the relay
    secrets.append(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    needles = [form for secret in secrets for form in _forms(secret)] + [key_text, token]
    needles += texts

    lines = 0
    for name, path in logs.items():
        text = path.read_text()
        for line in text.splitlines():
            json.loads(line)  # every line is a JSON object: nothing escaped the formatter
            lines += 1
        for needle in needles:
            assert needle not in text, f"a secret or plaintext in the {name} log"
    assert lines > 20  # debug logging did run in the three processes
    relay_lines = [json.loads(line) for line in logs["relay"].read_text().splitlines()]
    # the mailbox traffic rode Alice's stream: one line for the whole connection
    streams = [line for line in relay_lines if line.get("route") == "/v1/stream"]
    assert any(line["messages_in"] > 0 and line["bytes_in"] > 0 for line in streams)
    bob_lines = [json.loads(line) for line in logs["bob"].read_text().splitlines()]
    assert any(line.get("logger") == "sealwire.sidecar.access" for line in bob_lines)


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/v1/info", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False
