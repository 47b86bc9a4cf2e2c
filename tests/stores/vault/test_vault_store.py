"""sealwire-store-vault against a real OpenBao server: cas commits, races, faults, crashes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import pytest

from sealwire.errors import AuthenticationError
from sealwire.store import (
    INLINE_MAX,
    ManagedStore,
    StoreConflictError,
    StoreCredentialsError,
    StoreKey,
    StoreThrottledError,
    StoreUnavailableError,
)
from sealwire_store_vault import DEFAULT_CACHE_FILE, POLICY_TEMPLATE, open_vault_store

WRITER = Path(__file__).parents[2] / "helpers" / "store_writer.py"
KEY = StoreKey.generate()
NS = "crash"


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return "t/" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]


@pytest.fixture
def raw(vault_url: str) -> Iterator[hvac.Client]:
    client = hvac.Client(url=vault_url, token="root")
    yield client
    client.adapter.close()


def open_at(
    url: str, prefix: str, home: Path, cache: str = "cache.db", **extra: str
) -> ManagedStore:
    options = {"url": url, "prefix": prefix, "cache": cache, "retry_backoff": "0.01", **extra}
    return open_vault_store(options, KEY, home)


def test_a_ratchet_step_is_one_cas_write(vault_url: str, prefix: str, tmp_path: Path) -> None:
    with open_at(vault_url, prefix, tmp_path) as store:
        store.put("ratchet", "peer", b"s0")
        before = dict(store.counter.calls)
        with store.transaction() as txn:
            txn.put("ratchet", "peer", b"s1" * 100)
        calls = {k: v - before.get(k, 0) for k, v in store.counter.calls.items()}
        assert {k: v for k, v in calls.items() if v} == {"write_head": 1}
        big = os.urandom(INLINE_MAX * 3)
        store.put("groups", "g", big)
        before = dict(store.counter.calls)
        store.put("groups", "g", big[::-1])  # a new epoch: one blob in, the old one out
        calls = {k: v - before.get(k, 0) for k, v in store.counter.calls.items()}
        assert {k: v for k, v in calls.items() if v} == {
            "write_blob": 1,
            "write_head": 1,
            "delete_blob": 1,
        }
    with open_at(vault_url, prefix, tmp_path) as again:  # the cache holds the blob
        assert again.get("groups", "g") == big[::-1]
        assert again.counter.calls == {"read_head": 1}
    with open_at(vault_url, prefix, tmp_path, cache="other.db") as fresh:  # a new host
        assert fresh.get("groups", "g") == big[::-1]
        assert fresh.counter.calls == {"read_head": 1, "read_blob": 1}


def test_a_lost_race_on_other_keys_is_retried(vault_url: str, prefix: str, tmp_path: Path) -> None:
    with (
        open_at(vault_url, prefix, tmp_path, "a.db") as a,
        open_at(vault_url, prefix, tmp_path, "b.db") as b,
    ):
        a.put("ratchet", "peer-1", b"a1")
        b.put("ratchet", "peer-2", b"b1")
        a.put("ratchet", "peer-1", b"a2")
        writes = b.counter.calls["write_head"]
        b.put("ratchet", "peer-2", b"b2")
        assert b.counter.calls["write_head"] == writes + 2  # lost (cas), won
        b.refresh()
        assert (b.get("ratchet", "peer-1"), b.get("ratchet", "peer-2")) == (b"a2", b"b2")


def test_a_lost_race_on_the_same_key_is_never_overwritten(
    vault_url: str, prefix: str, tmp_path: Path
) -> None:
    with (
        open_at(vault_url, prefix, tmp_path, "a.db") as a,
        open_at(vault_url, prefix, tmp_path, "b.db") as b,
    ):
        a.put("ratchet", "peer", b"step 1")
        b.refresh()
        a.put("ratchet", "peer", b"step 2 by a")
        with pytest.raises(StoreConflictError), b.transaction() as txn:
            assert txn.get("ratchet", "peer") == b"step 1"  # b's stale view
            txn.put("ratchet", "peer", b"step 2 by b")
        assert b.get("ratchet", "peer") == b"step 2 by a"


def writer_options(url: str, prefix: str, **extra: str) -> str:
    return json.dumps({"url": url, "prefix": prefix, "retry_backoff": "0.01", **extra})


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "SEALWIRE_STORE_KEY": KEY.export_for_file().decode().strip(),
        "VAULT_TOKEN": "root",
    }


def test_two_processes_on_one_agent_never_both_advance_it(
    vault_url: str, prefix: str, tmp_path: Path
) -> None:
    steps = 20
    for i in range(2):
        (tmp_path / f"h{i}").mkdir()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WRITER),
                "increment",
                "vault",
                str(tmp_path / f"h{i}"),
                writer_options(vault_url, prefix),
                str(steps),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=150)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    seen = [int(v) for out in outputs for v in out.split()]
    assert sorted(seen) == list(range(1, 2 * steps + 1))  # no step was taken twice
    with open_at(vault_url, prefix, tmp_path) as store:
        assert store.get("ns", "counter") == str(2 * steps).encode()


def test_rate_limiting_is_retried_with_a_bound(
    fault_proxy: Any, prefix: str, tmp_path: Path
) -> None:
    with open_at(fault_proxy.url, prefix, tmp_path, retries="4") as store:
        fault_proxy.fail_vault(429, times=2)
        store.put("ns", "k", b"v")
        fault_proxy.fail_vault(429, times=-1)
        before = fault_proxy.requests
        with pytest.raises(StoreThrottledError):
            store.put("ns", "k", b"w")
        assert fault_proxy.requests - before == 4
        fault_proxy.clear()
        store.refresh()
        assert store.get("ns", "k") == b"v"


def test_a_sealed_server_is_retried_then_unavailable(
    fault_proxy: Any, prefix: str, tmp_path: Path
) -> None:
    with open_at(fault_proxy.url, prefix, tmp_path, retries="3") as store:
        fault_proxy.fail_vault(503, times=1)
        store.put("ns", "k", b"v")
        fault_proxy.fail_vault(503, times=-1)
        with pytest.raises(StoreUnavailableError):
            store.put("ns", "k", b"w")


def test_a_revoked_token_is_read_again_from_its_file(
    vault_url: str, prefix: str, tmp_path: Path, raw: hvac.Client
) -> None:
    """A real 403: the token in token_file is revoked; the store reads the file again
    (where a Vault Agent would have put a new token) and goes on; with no new token
    it is a StoreCredentialsError."""
    first = raw.auth.token.create(policies=["root"], ttl="1h")["auth"]["client_token"]
    token_file = tmp_path / "token"
    token_file.write_text(first)
    with open_at(vault_url, prefix, tmp_path, token_file="token") as store:
        store.put("ns", "k", b"v1")
        raw.auth.token.revoke(first)
        second = raw.auth.token.create(policies=["root"], ttl="1h")["auth"]["client_token"]
        token_file.write_text(second)
        store.put("ns", "k", b"v2")
        raw.auth.token.revoke(second)
        with pytest.raises(StoreCredentialsError):
            store.put("ns", "k", b"v3")
    with open_at(vault_url, prefix, tmp_path, cache="witness.db") as witness:
        assert witness.get("ns", "k") == b"v2"


def test_an_unreachable_server_is_a_typed_error(prefix: str, tmp_path: Path) -> None:
    from ports import free_port

    with pytest.raises(StoreUnavailableError):
        open_at(f"http://127.0.0.1:{free_port()}", prefix, tmp_path, retries="2")


def test_a_head_changed_behind_the_agents_back_is_refused(
    vault_url: str, prefix: str, tmp_path: Path, raw: hvac.Client
) -> None:
    with open_at(vault_url, prefix, tmp_path) as store:
        store.put("ns", "k", b"v1")
        garbage = {"v": base64.b64encode(b"I" + os.urandom(64)).decode()}
        raw.secrets.kv.v2.create_or_update_secret(path=f"{prefix}/head", secret=garbage)
        with pytest.raises(AuthenticationError):
            store.put("ns", "k", b"v2")
    with pytest.raises(AuthenticationError):
        open_at(vault_url, prefix, tmp_path, cache="fresh.db")


def test_a_rolled_back_head_is_refused(
    vault_url: str, prefix: str, tmp_path: Path, raw: hvac.Client
) -> None:
    with open_at(vault_url, prefix, tmp_path) as store:
        store.put("ratchet", "peer", b"step 1")
        old = raw.secrets.kv.v2.read_secret_version(
            path=f"{prefix}/head", raise_on_deleted_version=True
        )["data"]["data"]
        store.put("ratchet", "peer", b"step 2")
    raw.secrets.kv.v2.create_or_update_secret(path=f"{prefix}/head", secret=old)  # "rollback"
    with pytest.raises(StoreConflictError, match="rolled back"):
        open_at(vault_url, prefix, tmp_path)


def test_batched_commits_are_flushed_together_and_on_close(
    vault_url: str, prefix: str, tmp_path: Path
) -> None:
    with open_at(vault_url, prefix, tmp_path, max_unflushed="3") as store:
        for i in range(3):
            store.put("ratchet", "peer", f"step {i}".encode())
        assert store.counter.calls.get("write_head", 0) == 0
        store.put("ratchet", "peer", b"step 3")
        assert store.counter.calls.get("write_head") == 1
        store.put("ratchet", "peer", b"step 4")
    with open_at(vault_url, prefix, tmp_path, cache="fresh.db") as other:
        assert other.get("ratchet", "peer") == b"step 4"


def test_a_conflict_found_at_a_flush_keeps_the_journal_and_fails_closed(
    vault_url: str, prefix: str, tmp_path: Path
) -> None:
    batched = open_at(vault_url, prefix, tmp_path, "a.db", max_unflushed="5")
    with open_at(vault_url, prefix, tmp_path, "b.db") as other:
        with batched.transaction() as txn:
            txn.put("ratchet", "peer", b"batched " + (txn.get("ratchet", "peer") or b""))
        other.put("ratchet", "peer", b"written through")
    with pytest.raises(StoreConflictError):
        batched.flush()
    with pytest.raises(StoreConflictError):
        batched.put("ns", "more", b"x")
    batched.close()
    with pytest.raises(StoreConflictError):
        open_at(vault_url, prefix, tmp_path, "a.db", max_unflushed="5")


def collect(proc: subprocess.Popen[str], lines: list[int]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(int(line))


def check_consistent(store: ManagedStore) -> int:
    counter = int(store.get(NS, "counter") or b"0")
    if counter == 0:
        assert store.keys(NS) == []
        return 0
    assert store.get(NS, "state/a") == str(counter).encode()
    blob = store.get(NS, "state/blob")
    assert blob is not None
    assert store.get(NS, "state/digest") == hashlib.sha256(blob).hexdigest().encode()
    history = [f"history/{i:08d}" for i in range(max(1, counter - 2), counter + 1)]
    assert store.keys(NS, "history/") == history
    return counter


@pytest.mark.parametrize("max_unflushed", ["0", "4"])
def test_sigkill_never_loses_or_replays_a_commit(
    vault_url: str, prefix: str, tmp_path: Path, max_unflushed: str
) -> None:
    rng = random.Random(0x5EA1)
    committed = 0
    for round_ in range(4):
        proc = subprocess.Popen(
            [
                sys.executable,
                str(WRITER),
                "crash",
                "vault",
                str(tmp_path),
                writer_options(vault_url, prefix, max_unflushed=max_unflushed),
                str(round_),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        lines: list[int] = []
        reader = threading.Thread(target=collect, args=(proc, lines), daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while len(lines) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(lines) >= 3, "the writer did not start committing"
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        reader.join(10)
        assert proc.stdout is not None
        proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        reported = lines[-1]
        assert lines[0] == committed + 1
        cache = DEFAULT_CACHE_FILE  # the writer's own cache (and journal) on this host
        with open_at(vault_url, prefix, tmp_path, cache, max_unflushed=max_unflushed) as store:
            counter = check_consistent(store)
        assert reported <= counter <= reported + 1, (reported, counter)
        with open_at(vault_url, prefix, tmp_path, cache="witness.db") as witness:
            assert check_consistent(witness) == counter
        committed = counter


def test_the_documented_least_privilege_policy_is_enough(
    vault_url: str, prefix: str, tmp_path: Path, raw: hvac.Client
) -> None:
    """A token holding only POLICY_TEMPLATE (as docs/stores/vault.md prints it) runs the
    store, blobs included, and is refused outside its prefix."""
    raw.sys.create_or_update_policy(
        name="sealwire-test", policy=POLICY_TEMPLATE.format(mount="secret", prefix=prefix)
    )
    token = raw.auth.token.create(policies=["sealwire-test"], ttl="1h")["auth"]["client_token"]
    (tmp_path / "token").write_text(token)
    big = os.urandom(INLINE_MAX * 2)
    with open_at(vault_url, prefix, tmp_path, token_file="token") as store:
        store.put("groups", "g", big)
        store.put("groups", "g", big[::-1])  # deletes the first blob
        store.put("ratchet", "peer", b"s1")
        assert store.counter.calls["delete_blob"] == 1
    blobs = raw.secrets.kv.v2.list_secrets(path=f"{prefix}/blob")["data"]["keys"]
    assert len(blobs) == 1  # the unused blob was really deleted, with the policy's rights
    with open_at(vault_url, prefix, tmp_path, cache="fresh.db", token_file="token") as again:
        assert again.get("groups", "g") == big[::-1]
    with pytest.raises(StoreCredentialsError):
        open_at(vault_url, "elsewhere/agent", tmp_path, cache="x.db", token_file="token")
