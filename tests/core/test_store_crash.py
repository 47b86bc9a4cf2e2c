"""Crash safety: a writer killed with SIGKILL at random moments loses no commit
and leaves nothing half-written (ARCHITECTURE layer 7, core issue item 7).

A subprocess (``store_crash_writer.py``) commits numbered states; each
transaction writes several related keys. We kill it at a random moment, reopen
the store, and check that (1) every state it reported committed is there, (2)
at most one more state (committed, not yet reported) is there, and (3) every
key agrees with the counter: no transaction is visible in part.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sealwire.store import SqliteStore, StoreKey

WRITER = Path(__file__).with_name("store_crash_writer.py")
ROUNDS = 6
NS = "crash"

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")


def collect(proc: subprocess.Popen[str], lines: list[int]) -> None:
    """Collect the numbers the writer printed (on a thread: stdout blocks)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(int(line))


def check_consistent(store: SqliteStore) -> int:
    """Every key agrees with the counter; returns the counter."""
    counter = int(store.get(NS, "counter") or b"0")
    if counter == 0:
        assert store.keys(NS) == []
        return 0
    assert store.get(NS, "state/a") == str(counter).encode()
    blob = store.get(NS, "state/blob")
    assert blob is not None
    assert store.get(NS, "state/digest") == hashlib.sha256(blob).hexdigest().encode()
    seed = hashlib.sha256(str(counter).encode()).digest()
    assert blob == (seed * (len(blob) // 32 + 1))[: len(blob)]
    history = [f"history/{i:08d}" for i in range(max(1, counter - 2), counter + 1)]
    assert store.keys(NS, "history/") == history
    for name in history:
        i = int(name.split("/")[1])
        assert store.get(NS, name) == hashlib.sha256(str(i).encode()).digest()
    return counter


def test_sigkill_never_loses_or_tears_a_commit(tmp_path: Path) -> None:
    path = tmp_path / "crash.db"
    key = StoreKey.generate()
    env = {**os.environ, "SEALWIRE_STORE_KEY": key.export_for_file().decode().strip()}
    rng = random.Random(0x5EA1)
    committed = 0
    for round_ in range(ROUNDS):
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(path), str(round_)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        lines: list[int] = []
        reader = threading.Thread(target=collect, args=(proc, lines), daemon=True)
        reader.start()
        deadline = time.monotonic() + 20
        while len(lines) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(lines) >= 3, "the writer did not start committing"
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        reader.join(10)
        assert proc.stdout is not None
        proc.stdout.close()
        assert proc.returncode == -signal.SIGKILL
        reported = lines[-1]
        assert lines[0] == committed + 1  # it continued from the last state we saw
        with SqliteStore.open(path, key) as store:
            counter = check_consistent(store)
        assert reported <= counter <= reported + 1, (reported, counter)
        committed = counter
    assert committed >= ROUNDS * 3
