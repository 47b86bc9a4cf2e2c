"""The suite for stores built on :class:`~sealwire.store.ManagedStore`, public for store authors.

:class:`~sealwire.testing.store_contract.StateStoreContract` holds any store to the
:class:`~sealwire.store.StateStore` API. This suite adds what a store over a secrets
manager (a :class:`~sealwire.store.SecretsBackend` behind ``ManagedStore``) must do
against its real server or emulator: two hosts racing on one agent, a head changed
or rolled back behind the agent's back, batched commits and a conflict found at a
flush, throttling and outages answered with a bounded retry, a request the manager
carried out whose answer was lost, and a writer process killed with SIGKILL at
random moments (nothing reported lost, nothing replayed).

A store's tests subclass it with a few lines::

    class TestMyManaged(ManagedStoreContract):
        opener = "sealwire_store_mine:open_my_store"  # module:function(options, key, home)

        @pytest.fixture
        def manager_url(self, my_emulator_url: str) -> str:
            return my_emulator_url  # the server (or emulator) the tests run against

        def store_options(self, url: str, prefix: str) -> dict[str, str]:
            return {"endpoint": url, "prefix": prefix}

        def read_head(self, prefix: str) -> bytes: ...  # the manager's current head, raw
        def write_head(self, prefix: str, data: bytes) -> None: ...  # make data the head

        def fault_answer(self, fault: Fault) -> tuple[int, bytes]:
            return (429, b'{"error": "slow down"}') if fault == "throttled" else (503, b"{}")

The hooks:

* ``manager_url`` (a fixture): the URL of the manager the store talks to; it is in
  ``self.url`` during each test.
* :meth:`store_options`: the ``[agent.store]`` options that open the store on
  ``url`` under ``prefix`` (the suite adds ``cache``, ``retries``, ``retry_backoff``
  and ``max_unflushed``, the options every ``ManagedStore`` takes).
* :meth:`read_head` / :meth:`write_head`: what an operator could do by hand to the
  head secret, bypassing the store (the suite writes garbage, and an old head back).
* :meth:`fault_answer` and :attr:`fault_content_type`: how the manager answers when
  it throttles (``"throttled"``) or is down (``"unavailable"``); the suite puts a
  :class:`~sealwire.testing.fault_proxy.FaultProxy` in front of ``manager_url``
  (:attr:`fault_injection` False: a store with no server, whose fault tests skip).
* :meth:`writer_env`: environment the writer processes need (credentials).
* :meth:`prefix_for`: a prefix the manager accepts, from a hex digest.

The writer processes run ``python -m sealwire.testing.store_writer`` with
:attr:`opener`, so the store's package must be importable in the test's Python.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Literal

import pytest

from sealwire.errors import AuthenticationError
from sealwire.store import (
    ManagedStore,
    StoreConflictError,
    StoreError,
    StoreKey,
    StoreThrottledError,
    StoreUnavailableError,
)
from sealwire.testing.fault_proxy import FaultProxy
from sealwire.testing.store_writer import HISTORY_KEPT, NS, load_opener

__all__ = ["Fault", "ManagedStoreContract", "check_consistent"]

Fault = Literal["throttled", "unavailable"]

KEY = StoreKey.generate()
"""The store key of every store the suite opens (the writer processes get it by
``$SEALWIRE_STORE_KEY``)."""

WRITER_START = 60.0
"""Seconds a writer process may take to import the store's SDK and commit its first
states on a loaded 2-core machine."""
PROCESS_EXIT = 10.0
"""Seconds a killed writer (or its output reader) may take to be reaped."""
INCREMENT_PROCESSES = 150.0
"""Seconds two racing increment writers may take: each conflict costs a re-read."""
KILL_ROUNDS = 4
"""Times the crash test starts a writer and kills it."""
KILL_DELAY_MAX = 0.3
"""Upper bound (seconds) of the random moment, after its third commit, a writer is killed."""
CRASH_SEED = 0x5EA1
"""Seed of the kill moments, so a failing run can be repeated."""
INCREMENT_STEPS = 15
"""Increments each of the two racing writers commits."""
TEST_RETRY_BACKOFF = "0.01"
"""Seconds between retries in these tests (the default is for real managers)."""
THROTTLED_RETRIES = 4
"""The ``retries`` bound the throttling test sets, and counts calls against."""
UNAVAILABLE_RETRIES = 3
"""The ``retries`` bound the outage test sets."""
BATCH = 3
"""``max_unflushed`` of the batching test: three commits stay on the host, the fourth flushes."""


class ManagedStoreContract:
    """Subclass and define the hooks (see the module's documentation)."""

    opener: ClassVar[str]
    """``module:function`` of the store's open function, ``function(options, key, home)``."""
    fault_content_type: ClassVar[str] = "application/json"
    """Content type of the manager's error answers."""
    fault_injection: ClassVar[bool] = True
    """False for a store that reaches no server a proxy can stand in front of (a
    folder, as the scaffold's store): the throttling, outage and unreachable-manager
    tests are skipped, and ``manager_url`` may be any string its options understand."""

    url: str

    # -- hooks ------------------------------------------------------------------------------

    def store_options(self, url: str, prefix: str) -> dict[str, str]:
        raise NotImplementedError

    def read_head(self, prefix: str) -> bytes:
        raise NotImplementedError

    def write_head(self, prefix: str, data: bytes) -> None:
        raise NotImplementedError

    def fault_answer(self, fault: Fault) -> tuple[int, bytes]:
        raise NotImplementedError

    def writer_env(self) -> dict[str, str]:
        return {}

    def prefix_for(self, digest: str) -> str:
        return f"t/{digest[:16]}"

    # -- fixtures and helpers ---------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _managed_url(self, manager_url: str) -> None:
        self.url = manager_url

    @pytest.fixture
    def prefix(self, request: pytest.FixtureRequest) -> str:
        return self.prefix_for(hashlib.sha256(request.node.nodeid.encode()).hexdigest())

    @pytest.fixture
    def faults(self) -> Iterator[FaultProxy]:
        if not self.fault_injection:
            pytest.skip("the store reaches no server to inject faults in front of")
        proxy = FaultProxy(self.url, content_type=self.fault_content_type)
        try:
            yield proxy
        finally:
            proxy.close()

    def open_at(
        self, prefix: str, home: Path, cache: str = "cache.db", url: str | None = None, **extra: str
    ) -> ManagedStore:
        """The store under ``prefix`` with its cache file ``home/cache`` (another cache
        file is another host)."""
        options = {
            **self.store_options(self.url if url is None else url, prefix),
            "cache": cache,
            "retry_backoff": TEST_RETRY_BACKOFF,
            **extra,
        }
        store = load_opener(self.opener)(options, KEY, home)
        assert isinstance(store, ManagedStore), "the opener gives a ManagedStore"
        return store

    def inject(self, proxy: FaultProxy, fault: Fault, times: int) -> None:
        status, body = self.fault_answer(fault)
        proxy.fail(status, body, times)

    def _writer(self, mode: str, home: Path, prefix: str, arg: int, **extra: str) -> list[str]:
        options = {**self.store_options(self.url, prefix), "retry_backoff": TEST_RETRY_BACKOFF}
        return [
            sys.executable,
            "-m",
            "sealwire.testing.store_writer",
            mode,
            self.opener,
            str(home),
            json.dumps({**options, **extra}),
            str(arg),
        ]

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            **self.writer_env(),
            "SEALWIRE_STORE_KEY": KEY.export_for_file().decode().strip(),
        }

    # -- races between hosts ----------------------------------------------------------------

    def test_a_lost_race_on_other_keys_is_retried(self, prefix: str, tmp_path: Path) -> None:
        with (
            self.open_at(prefix, tmp_path, "a.db") as a,
            self.open_at(prefix, tmp_path, "b.db") as b,
        ):
            a.put("ratchet", "peer-1", b"a1")
            b.put("ratchet", "peer-2", b"b1")  # b's view was stale: it lost, re-read, retried
            assert b.get("ratchet", "peer-1") == b"a1"
            a.put("ratchet", "peer-1", b"a2")
            b.put("ratchet", "peer-2", b"b2")
            b.refresh()
            assert (b.get("ratchet", "peer-1"), b.get("ratchet", "peer-2")) == (b"a2", b"b2")
            a.refresh()
            assert (a.get("ratchet", "peer-1"), a.get("ratchet", "peer-2")) == (b"a2", b"b2")

    def test_a_lost_race_on_the_same_key_is_never_overwritten(
        self, prefix: str, tmp_path: Path
    ) -> None:
        with (
            self.open_at(prefix, tmp_path, "a.db") as a,
            self.open_at(prefix, tmp_path, "b.db") as b,
        ):
            a.put("ratchet", "peer", b"step 1")
            b.refresh()
            a.put("ratchet", "peer", b"step 2 by a")
            with pytest.raises(StoreConflictError), b.transaction() as txn:
                assert txn.get("ratchet", "peer") == b"step 1"  # b's stale view
                txn.put("ratchet", "peer", b"step 2 by b")
            assert b.get("ratchet", "peer") == b"step 2 by a"  # b now sees the winner
            with b.transaction() as txn:  # and a step on it commits
                step = txn.get("ratchet", "peer")
                assert step is not None
                txn.put("ratchet", "peer", step + b", step 3 by b")
            a.refresh()
            assert a.get("ratchet", "peer") == b"step 2 by a, step 3 by b"

    def test_two_processes_on_one_agent_never_both_advance_it(
        self, prefix: str, tmp_path: Path
    ) -> None:
        homes = [tmp_path / f"h{i}" for i in range(2)]
        for home in homes:
            home.mkdir()
        procs = [
            subprocess.Popen(
                self._writer("increment", home, prefix, INCREMENT_STEPS),
                stdout=subprocess.PIPE,
                text=True,
                env=self._env(),
            )
            for home in homes
        ]
        outputs = [p.communicate(timeout=INCREMENT_PROCESSES)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        seen = [int(v) for out in outputs for v in out.split()]
        # every committed value was committed by exactly one process: no step taken twice
        assert sorted(seen) == list(range(1, 2 * INCREMENT_STEPS + 1))
        with self.open_at(prefix, tmp_path) as store:
            assert store.get("ns", "counter") == str(2 * INCREMENT_STEPS).encode()

    # -- the head behind the agent's back ---------------------------------------------------

    def test_a_head_changed_behind_the_agents_back_is_refused(
        self, prefix: str, tmp_path: Path
    ) -> None:
        with self.open_at(prefix, tmp_path) as store:
            store.put("ns", "k", b"v1")
            self.write_head(prefix, b"I" + os.urandom(64))
            with pytest.raises(AuthenticationError):
                store.put("ns", "k", b"v2")  # lost the race, and the winner is no state of ours
        with pytest.raises(AuthenticationError):
            self.open_at(prefix, tmp_path, cache="fresh.db")

    def test_a_rolled_back_head_is_refused(self, prefix: str, tmp_path: Path) -> None:
        with self.open_at(prefix, tmp_path) as store:
            store.put("ratchet", "peer", b"step 1")
            old = self.read_head(prefix)
            store.put("ratchet", "peer", b"step 2")
        self.write_head(prefix, old)  # an old state written back as the current one
        with pytest.raises(StoreConflictError, match="rolled back"):
            self.open_at(prefix, tmp_path)

    # -- batching ---------------------------------------------------------------------------

    def test_batched_commits_are_flushed_together_and_on_close(
        self, prefix: str, tmp_path: Path
    ) -> None:
        with self.open_at(prefix, tmp_path, max_unflushed=str(BATCH)) as store:
            with self.open_at(prefix, tmp_path, cache="witness.db") as witness:
                for i in range(BATCH):
                    store.put("ratchet", "peer", f"step {i}".encode())
                witness.refresh()
                assert witness.get("ratchet", "peer") is None  # only on the host so far
                store.put("ratchet", "peer", b"step 3")  # the fourth flushes all four
                witness.refresh()
                assert witness.get("ratchet", "peer") == b"step 3"
            store.put("ratchet", "peer", b"step 4")
        with self.open_at(prefix, tmp_path, cache="fresh.db") as other:
            assert other.get("ratchet", "peer") == b"step 4"  # close flushed

    def test_a_conflict_found_at_a_flush_keeps_the_journal_and_fails_closed(
        self, prefix: str, tmp_path: Path
    ) -> None:
        batched = self.open_at(prefix, tmp_path, "a.db", max_unflushed="5")
        try:
            with self.open_at(prefix, tmp_path, "b.db") as other:
                with batched.transaction() as txn:
                    txn.put("ratchet", "peer", b"batched " + (txn.get("ratchet", "peer") or b""))
                other.put("ratchet", "peer", b"written through")
            with pytest.raises(StoreConflictError):
                batched.flush()
            with pytest.raises(StoreConflictError):
                batched.put("ns", "more", b"x")  # refuses to go on
        finally:
            batched.close()
        # the journal is still in the cache: reopening reports the conflict again
        with pytest.raises(StoreConflictError):
            self.open_at(prefix, tmp_path, "a.db", max_unflushed="5")

    # -- faults -----------------------------------------------------------------------------

    def test_throttling_is_retried_with_a_bound(
        self, faults: FaultProxy, prefix: str, tmp_path: Path
    ) -> None:
        retries = str(THROTTLED_RETRIES)
        with self.open_at(prefix, tmp_path, url=faults.url, retries=retries) as store:
            self.inject(faults, "throttled", times=2)
            store.put("ns", "k", b"v")  # two throttled calls, then through
            self.inject(faults, "throttled", times=-1)
            before = faults.requests
            with pytest.raises(StoreThrottledError):
                store.put("ns", "k", b"w")
            assert faults.requests - before == THROTTLED_RETRIES  # the bound, not more
            faults.clear()
            store.refresh()
            assert store.get("ns", "k") == b"v"  # nothing half-committed

    def test_an_outage_is_retried_then_unavailable(
        self, faults: FaultProxy, prefix: str, tmp_path: Path
    ) -> None:
        retries = str(UNAVAILABLE_RETRIES)
        with self.open_at(prefix, tmp_path, url=faults.url, retries=retries) as store:
            self.inject(faults, "unavailable", times=1)
            store.put("ns", "k", b"v")
            self.inject(faults, "unavailable", times=-1)
            with pytest.raises(StoreUnavailableError):
                store.put("ns", "k", b"w")
            faults.clear()
            store.refresh()
            assert store.get("ns", "k") == b"v"

    def test_a_request_carried_out_whose_answer_was_lost_breaks_nothing(
        self, faults: FaultProxy, prefix: str, tmp_path: Path
    ) -> None:
        """Each request of a commit in turn reaches the manager, and its answer is lost
        (an outage, to the store, which retries): the commit is there or reported
        failed, never half there, and the store goes on, on this host and another."""
        status, body = self.fault_answer("unavailable")
        options = {"url": faults.url, "retries": str(UNAVAILABLE_RETRIES)}
        with self.open_at(prefix, tmp_path, **options) as store:
            store.put("ns", "k", b"first")
            before = faults.requests
            store.put("ns", "k", b"second")
            requests = faults.requests - before
        assert requests >= 1
        previous = b"second"
        for lost in range(requests):
            value = f"answer {lost} lost".encode()
            with self.open_at(prefix, tmp_path, **options) as store:
                faults.lose_answer(status, body, after=lost)
                try:
                    store.put("ns", "k", value)
                    reported = True
                except StoreError:
                    reported = False
                faults.clear()
                store.refresh()
                found = store.get("ns", "k")
                assert found == value if reported else found in (value, previous), (lost, found)
                previous = f"after {lost}".encode()
                store.put("ns", "k", previous)  # and it goes on
            with self.open_at(prefix, tmp_path, cache="witness.db") as witness:
                assert witness.get("ns", "k") == previous

    def test_an_unreachable_manager_is_a_typed_error(self, prefix: str, tmp_path: Path) -> None:
        if not self.fault_injection:
            pytest.skip("the store reaches no server")
        with socket.socket() as probe:  # a port nobody listens on once it is closed
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with pytest.raises(StoreUnavailableError):
            self.open_at(prefix, tmp_path, url=f"http://127.0.0.1:{port}", retries="2")

    # -- kill -9 ----------------------------------------------------------------------------

    @pytest.mark.parametrize("max_unflushed", ["0", "4"])
    def test_sigkill_never_loses_or_replays_a_commit(
        self, prefix: str, tmp_path: Path, max_unflushed: str
    ) -> None:
        """A writer process is killed at random moments; every commit it reported is
        there after a reopen (flushed from the host's journal when batched), at most one
        more, and no transaction is visible in part, on this host and on another."""
        rng = random.Random(CRASH_SEED)
        committed = 0
        cache = "writer.db"
        for round_ in range(KILL_ROUNDS):
            proc = subprocess.Popen(
                self._writer(
                    "crash", tmp_path, prefix, round_, max_unflushed=max_unflushed, cache=cache
                ),
                stdout=subprocess.PIPE,
                text=True,
                env=self._env(),
            )
            lines: list[int] = []
            reader = threading.Thread(target=_collect, args=(proc, lines), daemon=True)
            reader.start()
            deadline = time.monotonic() + WRITER_START
            while len(lines) < 3 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)  # polling a child's output: no event to wait for
            if len(lines) < 3:
                proc.kill()
            time.sleep(rng.uniform(0.0, KILL_DELAY_MAX))  # the random moment of the kill
            proc.send_signal(signal.SIGKILL)
            proc.wait(PROCESS_EXIT)
            reader.join(PROCESS_EXIT)
            assert proc.stdout is not None
            proc.stdout.close()
            assert len(lines) >= 3, "the writer did not start committing"
            assert proc.returncode == -signal.SIGKILL
            reported = lines[-1]
            assert lines[0] == committed + 1
            with self.open_at(prefix, tmp_path, cache, max_unflushed=max_unflushed) as store:
                counter = check_consistent(store)
            assert reported <= counter <= reported + 1, (reported, counter)
            with self.open_at(prefix, tmp_path, cache="witness.db") as witness:
                assert check_consistent(witness) == counter  # in the manager, not only here
            committed = counter


def _collect(proc: subprocess.Popen[str], lines: list[int]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(int(line))


def check_consistent(store: ManagedStore) -> int:
    """The crash writer's last commit in ``store``, checked whole (no part of a later one)."""
    counter = int(store.get(NS, "counter") or b"0")
    if counter == 0:
        assert store.keys(NS) == []
        return 0
    assert store.get(NS, "state/a") == str(counter).encode()
    blob = store.get(NS, "state/blob")
    assert blob is not None
    assert store.get(NS, "state/digest") == hashlib.sha256(blob).hexdigest().encode()
    first = max(1, counter - HISTORY_KEPT + 1)
    assert store.keys(NS, "history/") == [f"history/{i:08d}" for i in range(first, counter + 1)]
    return counter
