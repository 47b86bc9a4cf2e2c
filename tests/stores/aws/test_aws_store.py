"""sealwire-store-aws against moto in server mode: compare-and-set, races, faults, crashes."""

from __future__ import annotations

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

import boto3
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
from sealwire_store_aws import DEFAULT_CACHE_FILE, open_aws_store

WRITER = Path(__file__).parents[2] / "helpers" / "store_writer.py"
KEY = StoreKey.generate()
NS = "crash"


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return "t/" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]


@pytest.fixture
def raw(moto_url: str) -> Iterator[Any]:
    client = boto3.client("secretsmanager", endpoint_url=moto_url, region_name="us-east-1")
    yield client
    client.close()


def open_at(
    url: str, prefix: str, home: Path, cache: str = "cache.db", **extra: str
) -> ManagedStore:
    options = {
        "prefix": prefix,
        "region": "us-east-1",
        "endpoint_url": url,
        "cache": cache,
        "retry_backoff": "0.01",
        **extra,
    }
    return open_aws_store(options, KEY, home)


def test_a_ratchet_step_is_one_compare_and_set(moto_url: str, prefix: str, tmp_path: Path) -> None:
    with open_at(moto_url, prefix, tmp_path) as store:
        store.put("ratchet", "peer", b"s0")
        before = dict(store.counter.calls)
        with store.transaction() as txn:
            txn.put("ratchet", "peer", b"s1" * 100)
        calls = {k: v - before.get(k, 0) for k, v in store.counter.calls.items()}
        assert {k: v for k, v in calls.items() if v} == {
            "put_secret_value": 1,
            "update_secret_version_stage": 1,
        }
        big = os.urandom(INLINE_MAX * 3)
        before = dict(store.counter.calls)
        store.put("groups", "g", big)  # a group state: written once as a blob
        store.put("ratchet", "peer", b"s2")  # the next step does not rewrite the blob
        calls = {k: v - before.get(k, 0) for k, v in store.counter.calls.items()}
        assert calls.get("create_secret") == 1
    with open_at(moto_url, prefix, tmp_path) as again:  # the cache holds the blob
        assert again.get("groups", "g") == big
        assert again.counter.calls == {"get_secret_value": 1}
    with open_at(moto_url, prefix, tmp_path, cache="other.db") as fresh:  # a new host
        assert fresh.get("groups", "g") == big
        assert fresh.counter.calls == {"get_secret_value": 2}


def test_a_lost_race_on_other_keys_is_retried(moto_url: str, prefix: str, tmp_path: Path) -> None:
    with (
        open_at(moto_url, prefix, tmp_path, "a.db") as a,
        open_at(moto_url, prefix, tmp_path, "b.db") as b,
    ):
        a.put("ratchet", "peer-1", b"a1")
        b.put("ratchet", "peer-2", b"b1")  # b's view was stale: it lost, re-read, retried
        assert b.get("ratchet", "peer-1") == b"a1"
        a.put("ratchet", "peer-1", b"a2")
        stage_moves = b.counter.calls.get("update_secret_version_stage", 0)
        b.put("ratchet", "peer-2", b"b2")
        assert b.counter.calls["update_secret_version_stage"] == stage_moves + 2  # lost, won
        b.refresh()
        assert (b.get("ratchet", "peer-1"), b.get("ratchet", "peer-2")) == (b"a2", b"b2")


def test_a_lost_race_on_the_same_key_is_never_overwritten(
    moto_url: str, prefix: str, tmp_path: Path
) -> None:
    with (
        open_at(moto_url, prefix, tmp_path, "a.db") as a,
        open_at(moto_url, prefix, tmp_path, "b.db") as b,
    ):
        a.put("ratchet", "peer", b"step 1")
        b.refresh()
        with b.transaction() as txn:
            assert txn.get("ratchet", "peer") == b"step 1"
        a.put("ratchet", "peer", b"step 2 by a")
        with pytest.raises(StoreConflictError), b.transaction() as txn:
            assert txn.get("ratchet", "peer") == b"step 1"  # b's stale view
            txn.put("ratchet", "peer", b"step 2 by b")
        assert b.get("ratchet", "peer") == b"step 2 by a"  # b now sees the winner
        with b.transaction() as txn:  # and a step on it commits
            txn.put("ratchet", "peer", txn.get("ratchet", "peer") + b", step 3 by b")  # type: ignore[operator]
        a.refresh()
        assert a.get("ratchet", "peer") == b"step 2 by a, step 3 by b"


def writer_options(url: str, prefix: str, **extra: str) -> str:
    options = {
        "prefix": prefix,
        "region": "us-east-1",
        "endpoint_url": url,
        "retry_backoff": "0.01",
        **extra,
    }
    return json.dumps(options)


def _env() -> dict[str, str]:
    return {**os.environ, "SEALWIRE_STORE_KEY": KEY.export_for_file().decode().strip()}


def test_two_processes_on_one_agent_never_both_advance_it(
    moto_url: str, prefix: str, tmp_path: Path
) -> None:
    steps = 15
    for i in range(2):
        (tmp_path / f"h{i}").mkdir()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WRITER),
                "increment",
                "aws",
                str(tmp_path / f"h{i}"),
                writer_options(moto_url, prefix),
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
    # every committed value was committed by exactly one process: no step was taken twice
    assert sorted(seen) == list(range(1, 2 * steps + 1))
    with open_at(moto_url, prefix, tmp_path) as store:
        assert store.get("ns", "counter") == str(2 * steps).encode()


def test_throttling_is_retried_with_a_bound(fault_proxy: Any, prefix: str, tmp_path: Path) -> None:
    with open_at(fault_proxy.url, prefix, tmp_path, retries="4") as store:
        fault_proxy.fail_aws("ThrottlingException", times=2)
        store.put("ns", "k", b"v")  # two throttled calls, then through
        fault_proxy.fail_aws("ThrottlingException", times=-1)
        before = fault_proxy.requests
        with pytest.raises(StoreThrottledError):
            store.put("ns", "k", b"w")
        assert fault_proxy.requests - before == 4  # the bound, not more
        fault_proxy.clear()
        store.refresh()
        assert store.get("ns", "k") == b"v"  # nothing half-committed


def test_server_errors_are_retried_then_unavailable(
    fault_proxy: Any, prefix: str, tmp_path: Path
) -> None:
    with open_at(fault_proxy.url, prefix, tmp_path, retries="3") as store:
        fault_proxy.fail_aws("InternalServiceError", times=1, status=500)
        store.put("ns", "k", b"v")
        fault_proxy.fail_aws("InternalServiceError", times=-1, status=500)
        with pytest.raises(StoreUnavailableError):
            store.put("ns", "k", b"w")


def test_expired_credentials_get_one_fresh_client_then_a_typed_error(
    fault_proxy: Any, prefix: str, tmp_path: Path
) -> None:
    with open_at(fault_proxy.url, prefix, tmp_path) as store:
        fault_proxy.fail_aws("ExpiredTokenException", times=1)
        store.put("ns", "k", b"v")  # refreshed once, then through
        fault_proxy.fail_aws("ExpiredTokenException", times=-1)
        before = fault_proxy.requests
        with pytest.raises(StoreCredentialsError):
            store.put("ns", "k", b"w")
        assert fault_proxy.requests - before == 2


def test_an_unreachable_manager_is_a_typed_error(prefix: str, tmp_path: Path) -> None:
    from ports import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    with pytest.raises(StoreUnavailableError):
        open_at(url, prefix, tmp_path, retries="2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.db"]


def test_a_head_changed_behind_the_agents_back_is_refused(
    moto_url: str, prefix: str, tmp_path: Path, raw: Any
) -> None:
    with open_at(moto_url, prefix, tmp_path) as store:
        store.put("ns", "k", b"v1")
        raw.put_secret_value(SecretId=f"{prefix}/head", SecretBinary=b"I" + os.urandom(64))
        with pytest.raises(AuthenticationError):
            store.put("ns", "k", b"v2")  # lost the race, and the winner is no state of ours
    with pytest.raises(AuthenticationError):
        open_at(moto_url, prefix, tmp_path, cache="fresh.db")


def test_a_rolled_back_head_is_refused(
    moto_url: str, prefix: str, tmp_path: Path, raw: Any
) -> None:
    with open_at(moto_url, prefix, tmp_path) as store:
        store.put("ratchet", "peer", b"step 1")
        old = raw.get_secret_value(SecretId=f"{prefix}/head", VersionStage="AWSCURRENT")
        store.put("ratchet", "peer", b"step 2")
        now = raw.get_secret_value(SecretId=f"{prefix}/head", VersionStage="AWSCURRENT")
    raw.update_secret_version_stage(
        SecretId=f"{prefix}/head",
        VersionStage="AWSCURRENT",
        MoveToVersionId=old["VersionId"],
        RemoveFromVersionId=now["VersionId"],
    )
    with pytest.raises(StoreConflictError, match="rolled back"):
        open_at(moto_url, prefix, tmp_path)


def test_batched_commits_are_flushed_together_and_on_close(
    moto_url: str, prefix: str, tmp_path: Path
) -> None:
    with open_at(moto_url, prefix, tmp_path, max_unflushed="3") as store:
        for i in range(3):
            store.put("ratchet", "peer", f"step {i}".encode())
        assert store.counter.calls.get("put_secret_value", 0) == 0  # three only on the host
        store.put("ratchet", "peer", b"step 3")  # the fourth flushes all four: one head
        assert store.counter.calls.get("create_secret") == 1
        store.put("ratchet", "peer", b"step 4")
    with open_at(moto_url, prefix, tmp_path, cache="fresh.db") as other:
        assert other.get("ratchet", "peer") == b"step 4"  # close flushed


def test_a_conflict_found_at_a_flush_keeps_the_journal_and_fails_closed(
    moto_url: str, prefix: str, tmp_path: Path
) -> None:
    batched = open_at(moto_url, prefix, tmp_path, "a.db", max_unflushed="5")
    with open_at(moto_url, prefix, tmp_path, "b.db") as other:
        with batched.transaction() as txn:
            txn.put("ratchet", "peer", b"batched " + (txn.get("ratchet", "peer") or b""))
        other.put("ratchet", "peer", b"written through")
    with pytest.raises(StoreConflictError):
        batched.flush()
    with pytest.raises(StoreConflictError):
        batched.put("ns", "more", b"x")  # refuses to go on
    batched.close()
    # the journal is still in the cache: reopening reports the conflict again
    with pytest.raises(StoreConflictError):
        open_at(moto_url, prefix, tmp_path, "a.db", max_unflushed="5")


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
    moto_url: str, prefix: str, tmp_path: Path, max_unflushed: str
) -> None:
    """Like SQLite's test: the writer is killed at random moments; every commit it
    reported is there after a reopen (flushed from the host's journal when batched),
    at most one more, and no transaction is visible in part."""
    rng = random.Random(0x5EA1)
    committed = 0
    for round_ in range(4):
        proc = subprocess.Popen(
            [
                sys.executable,
                str(WRITER),
                "crash",
                "aws",
                str(tmp_path),
                writer_options(moto_url, prefix, max_unflushed=max_unflushed),
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
        # the writer's own cache (and journal, when batched) on the same host
        cache = DEFAULT_CACHE_FILE
        with open_at(moto_url, prefix, tmp_path, cache, max_unflushed=max_unflushed) as store:
            counter = check_consistent(store)
        assert reported <= counter <= reported + 1, (reported, counter)
        with open_at(moto_url, prefix, tmp_path, cache="witness.db") as witness:
            assert check_consistent(witness) == counter  # it is in the manager, not only here
        committed = counter
