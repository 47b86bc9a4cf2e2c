"""sealwire-store-gcp against the Secret Manager REST fixture: etag commits, races, faults."""

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
from sealwire_store_gcp import CURRENT_ANNOTATION, DEFAULT_CACHE_FILE, make_client, open_gcp_store

WRITER = Path(__file__).parents[2] / "helpers" / "store_writer.py"
KEY = StoreKey.generate()
NS = "crash"


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return "t-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]


@pytest.fixture
def raw(gcp_url: str) -> Iterator[Any]:
    client = make_client(endpoint=gcp_url, anonymous=True)
    yield client
    client.transport.close()


def open_at(
    url: str, prefix: str, home: Path, cache: str = "cache.db", **extra: str
) -> ManagedStore:
    options = {
        "project": "test",
        "prefix": prefix,
        "endpoint": url,
        "anonymous": "true",
        "cache": cache,
        "retry_backoff": "0.01",
        **extra,
    }
    return open_gcp_store(options, KEY, home)


def test_a_ratchet_step_is_one_etag_checked_commit(
    gcp_url: str, prefix: str, tmp_path: Path
) -> None:
    with open_at(gcp_url, prefix, tmp_path) as store:
        store.put("ratchet", "peer", b"s0")
        before = dict(store.counter.calls)
        with store.transaction() as txn:
            txn.put("ratchet", "peer", b"s1" * 100)
        calls = {k: v - before.get(k, 0) for k, v in store.counter.calls.items()}
        assert {k: v for k, v in calls.items() if v} == {
            "add_head_version": 1,
            "get_secret": 1,
            "update_secret": 1,
            "destroy_version": 1,  # the superseded version: no longer billed
        }
        big = os.urandom(INLINE_MAX * 3)
        store.put("groups", "g", big)
        before = dict(store.counter.calls)
        store.put("groups", "g", big[::-1])
        calls = {k: v - before.get(k, 0) for k, v in store.counter.calls.items()}
        assert calls["create_blob"] == calls["add_blob_version"] == calls["delete_blob"] == 1
    with open_at(gcp_url, prefix, tmp_path) as again:  # the cache holds the blob
        assert again.get("groups", "g") == big[::-1]
        assert again.counter.calls == {"get_secret": 1, "access_head": 1}
    with open_at(gcp_url, prefix, tmp_path, cache="other.db") as fresh:  # a new host
        assert fresh.get("groups", "g") == big[::-1]
        assert fresh.counter.calls == {"get_secret": 1, "access_head": 1, "access_blob": 1}


def test_a_lost_race_on_other_keys_is_retried(gcp_url: str, prefix: str, tmp_path: Path) -> None:
    with (
        open_at(gcp_url, prefix, tmp_path, "a.db") as a,
        open_at(gcp_url, prefix, tmp_path, "b.db") as b,
    ):
        a.put("ratchet", "peer-1", b"a1")
        b.put("ratchet", "peer-2", b"b1")
        a.put("ratchet", "peer-1", b"a2")
        updates = b.counter.calls["update_secret"]
        added = b.counter.calls["add_head_version"]
        b.put("ratchet", "peer-2", b"b2")
        assert b.counter.calls["add_head_version"] == added + 2  # lost, won
        assert b.counter.calls["update_secret"] == updates + 1  # the lost one saw it first
        b.refresh()
        assert (b.get("ratchet", "peer-1"), b.get("ratchet", "peer-2")) == (b"a2", b"b2")


def test_a_lost_race_on_the_same_key_is_never_overwritten(
    gcp_url: str, prefix: str, tmp_path: Path
) -> None:
    with (
        open_at(gcp_url, prefix, tmp_path, "a.db") as a,
        open_at(gcp_url, prefix, tmp_path, "b.db") as b,
    ):
        a.put("ratchet", "peer", b"step 1")
        b.refresh()
        a.put("ratchet", "peer", b"step 2 by a")
        with pytest.raises(StoreConflictError), b.transaction() as txn:
            assert txn.get("ratchet", "peer") == b"step 1"  # b's stale view
            txn.put("ratchet", "peer", b"step 2 by b")
        assert b.get("ratchet", "peer") == b"step 2 by a"


def writer_options(url: str, prefix: str, **extra: str) -> str:
    options = {
        "project": "test",
        "prefix": prefix,
        "endpoint": url,
        "anonymous": "true",
        "retry_backoff": "0.01",
        **extra,
    }
    return json.dumps(options)


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "SEALWIRE_STORE_KEY": KEY.export_for_file().decode().strip(),
    }


def test_two_processes_on_one_agent_never_both_advance_it(
    gcp_url: str, prefix: str, tmp_path: Path
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
                "gcp",
                str(tmp_path / f"h{i}"),
                writer_options(gcp_url, prefix),
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
    with open_at(gcp_url, prefix, tmp_path) as store:
        assert store.get("ns", "counter") == str(2 * steps).encode()


def test_rate_limiting_is_retried_with_a_bound(
    fault_proxy: Any, prefix: str, tmp_path: Path
) -> None:
    with open_at(fault_proxy.url, prefix, tmp_path, retries="4") as store:
        fault_proxy.fail_gcp(429, "RESOURCE_EXHAUSTED", times=2)
        store.put("ns", "k", b"v")
        fault_proxy.fail_gcp(429, "RESOURCE_EXHAUSTED", times=-1)
        before = fault_proxy.requests
        with pytest.raises(StoreThrottledError):
            store.put("ns", "k", b"w")
        assert fault_proxy.requests - before == 4
        fault_proxy.clear()
        store.refresh()
        assert store.get("ns", "k") == b"v"


def test_an_unavailable_service_is_retried_then_a_typed_error(
    fault_proxy: Any, prefix: str, tmp_path: Path
) -> None:
    with open_at(fault_proxy.url, prefix, tmp_path, retries="3") as store:
        fault_proxy.fail_gcp(503, "UNAVAILABLE", times=1)
        store.put("ns", "k", b"v")
        fault_proxy.fail_gcp(503, "UNAVAILABLE", times=-1)
        with pytest.raises(StoreUnavailableError):
            store.put("ns", "k", b"w")


def test_refused_credentials_get_one_fresh_client_then_a_typed_error(
    fault_proxy: Any, prefix: str, tmp_path: Path
) -> None:
    with open_at(fault_proxy.url, prefix, tmp_path) as store:
        fault_proxy.fail_gcp(401, "UNAUTHENTICATED", times=1)
        store.put("ns", "k", b"v")
        fault_proxy.fail_gcp(403, "PERMISSION_DENIED", times=-1)
        before = fault_proxy.requests
        with pytest.raises(StoreCredentialsError):
            store.put("ns", "k", b"w")
        assert fault_proxy.requests - before == 2


def test_an_unreachable_server_is_a_typed_error(prefix: str, tmp_path: Path) -> None:
    from ports import free_port

    with pytest.raises(StoreUnavailableError):
        open_at(f"http://127.0.0.1:{free_port()}", prefix, tmp_path, retries="2")


def _point_head_at(raw: Any, prefix: str, content: bytes) -> None:
    """What an operator could do by hand: add a version and make it the current one."""
    head = f"projects/test/secrets/{prefix}-head"
    version = raw.add_secret_version(parent=head, payload={"data": content}).name
    secret = raw.get_secret(name=head)
    annotations = {**secret.annotations, CURRENT_ANNOTATION: version.rsplit("/", 1)[1]}
    raw.update_secret(
        secret={"name": head, "annotations": annotations}, update_mask={"paths": ["annotations"]}
    )


def test_a_head_changed_behind_the_agents_back_is_refused(
    gcp_url: str, prefix: str, tmp_path: Path, raw: Any
) -> None:
    with open_at(gcp_url, prefix, tmp_path) as store:
        store.put("ns", "k", b"v1")
        _point_head_at(raw, prefix, b"I" + os.urandom(64))
        with pytest.raises(AuthenticationError):
            store.put("ns", "k", b"v2")
    with pytest.raises(AuthenticationError):
        open_at(gcp_url, prefix, tmp_path, cache="fresh.db")


def test_a_rolled_back_head_is_refused(gcp_url: str, prefix: str, tmp_path: Path, raw: Any) -> None:
    head = f"projects/test/secrets/{prefix}-head"
    with open_at(gcp_url, prefix, tmp_path) as store:
        store.put("ratchet", "peer", b"step 1")
        old = raw.access_secret_version(name=f"{head}/versions/latest").payload.data
        store.put("ratchet", "peer", b"step 2")
    _point_head_at(raw, prefix, old)  # an old state written back as the current one
    with pytest.raises(StoreConflictError, match="rolled back"):
        open_at(gcp_url, prefix, tmp_path)


def test_batched_commits_are_flushed_together_and_on_close(
    gcp_url: str, prefix: str, tmp_path: Path
) -> None:
    with open_at(gcp_url, prefix, tmp_path, max_unflushed="3") as store:
        for i in range(3):
            store.put("ratchet", "peer", f"step {i}".encode())
        assert store.counter.calls.get("add_head_version", 0) == 0
        store.put("ratchet", "peer", b"step 3")
        assert store.counter.calls.get("add_head_version") == 1
        store.put("ratchet", "peer", b"step 4")
    with open_at(gcp_url, prefix, tmp_path, cache="fresh.db") as other:
        assert other.get("ratchet", "peer") == b"step 4"


def test_a_conflict_found_at_a_flush_keeps_the_journal_and_fails_closed(
    gcp_url: str, prefix: str, tmp_path: Path
) -> None:
    batched = open_at(gcp_url, prefix, tmp_path, "a.db", max_unflushed="5")
    with open_at(gcp_url, prefix, tmp_path, "b.db") as other:
        with batched.transaction() as txn:
            txn.put("ratchet", "peer", b"batched " + (txn.get("ratchet", "peer") or b""))
        other.put("ratchet", "peer", b"written through")
    with pytest.raises(StoreConflictError):
        batched.flush()
    with pytest.raises(StoreConflictError):
        batched.put("ns", "more", b"x")
    batched.close()
    with pytest.raises(StoreConflictError):
        open_at(gcp_url, prefix, tmp_path, "a.db", max_unflushed="5")


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
    gcp_url: str, prefix: str, tmp_path: Path, max_unflushed: str
) -> None:
    rng = random.Random(0x5EA1)
    committed = 0
    for round_ in range(4):
        proc = subprocess.Popen(
            [
                sys.executable,
                str(WRITER),
                "crash",
                "gcp",
                str(tmp_path),
                writer_options(gcp_url, prefix, max_unflushed=max_unflushed),
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
        with open_at(gcp_url, prefix, tmp_path, cache, max_unflushed=max_unflushed) as store:
            counter = check_consistent(store)
        assert reported <= counter <= reported + 1, (reported, counter)
        with open_at(gcp_url, prefix, tmp_path, cache="witness.db") as witness:
            assert check_consistent(witness) == counter
        committed = counter
