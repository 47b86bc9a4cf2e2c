"""The StateStore contract, run against MemoryStore and SqliteStore alike.

Hypothesis drives random sequences of writes and transactions (committed or
rolled back) through both stores and a plain dict model: all three must agree.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sealwire.store._base as store_base
from sealwire.errors import StateError
from sealwire.store import (
    MemoryStore,
    SqliteStore,
    StateStore,
    StoreError,
    StoreKey,
    StoreTransaction,
)

KEY = StoreKey.generate()
Factory = Callable[[], StateStore]


@pytest.fixture(params=["memory", "sqlite-memory", "sqlite-file"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    opened: list[StateStore] = []

    def factory() -> StateStore:
        if request.param == "memory":
            store: StateStore = MemoryStore()
        elif request.param == "sqlite-memory":
            store = SqliteStore.open(":memory:", KEY)
        else:
            store = SqliteStore.open(tmp_path / f"s{len(opened)}.db", KEY)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


def test_get_put_delete_keys(make_store: Factory) -> None:
    store = make_store()
    assert isinstance(store, StateStore)
    assert store.get("ns", "k") is None
    store.put("ns", "k", b"v1")
    store.put("ns", "k", b"v2")
    store.put("other", "k", b"elsewhere")
    store.put("ns", "empty", b"")
    assert store.get("ns", "k") == b"v2"
    assert store.get("ns", "empty") == b""
    assert store.get("other", "k") == b"elsewhere"
    assert store.delete("ns", "k") is True
    assert store.delete("ns", "k") is False
    assert store.get("ns", "k") is None
    assert store.keys("ns") == ["empty"]
    assert store.keys("nothing") == []


def test_keys_are_sorted_by_code_point_and_filtered_by_prefix(make_store: Factory) -> None:
    store = make_store()
    names = ["b", "a", "ab", "a\u00e9", "a\U0001f600", "aZ", "\u4e2d", "A"]
    for name in names:
        store.put("ns", name, name.encode())
    assert store.keys("ns") == sorted(names)
    assert store.keys("ns", "a") == sorted(n for n in names if n.startswith("a"))
    assert store.keys("ns", "a\u00e9") == ["a\u00e9"]
    assert store.keys("ns", "zzz") == []


def test_transaction_commits_all_and_reads_its_own_writes(make_store: Factory) -> None:
    store = make_store()
    store.put("ns", "gone", b"x")
    with store.transaction() as txn:
        assert isinstance(txn, StoreTransaction)
        txn.put("ns", "a", b"1")
        txn.put("ns", "b", b"2")
        assert txn.delete("ns", "gone") is True
        assert txn.get("ns", "a") == b"1"
        assert txn.get("ns", "gone") is None
        assert txn.keys("ns") == ["a", "b"]
    assert store.keys("ns") == ["a", "b"]
    with pytest.raises(StateError):
        txn.get("ns", "a")  # the transaction is over


def test_transaction_rolls_back_on_exception(make_store: Factory) -> None:
    store = make_store()
    store.put("ns", "a", b"before")
    with pytest.raises(RuntimeError), store.transaction() as txn:
        txn.put("ns", "a", b"after")
        txn.put("ns", "b", b"new")
        txn.delete("ns", "a")
        raise RuntimeError("abort")
    assert store.get("ns", "a") == b"before"
    assert store.get("ns", "b") is None


def test_misuse_is_a_state_error(make_store: Factory) -> None:
    store = make_store()
    with store.transaction():
        with pytest.raises(StateError):
            store.put("ns", "a", b"x")  # use the transaction object
        with pytest.raises(StateError), store.transaction():
            pass
    store.close()
    store.close()
    with pytest.raises(StateError):
        store.get("ns", "a")


@pytest.mark.parametrize(
    ("namespace", "key"),
    [("", "k"), ("ns", ""), ("n\x00s", "k"), ("ns", "\ud800"), ("ns", "k" * 1025), (b"ns", "k")],
)
def test_invalid_names_are_refused(make_store: Factory, namespace: str, key: str) -> None:
    store = make_store()
    for call in (
        lambda: store.put(namespace, key, b"v"),
        lambda: store.get(namespace, key),
        lambda: store.delete(namespace, key),
    ):
        with pytest.raises(StoreError):
            call()


def test_invalid_values_are_refused(make_store: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store()
    with pytest.raises(StoreError):
        store.put("ns", "k", "text")  # type: ignore[arg-type]
    monkeypatch.setattr(store_base, "MAX_VALUE_SIZE", 10)
    store.put("ns", "k", bytearray(b"x" * 10))  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        store.put("ns", "k", b"x" * 11)
    assert store.get("ns", "k") == b"x" * 10


def test_a_transaction_excludes_other_threads(make_store: Factory) -> None:
    store = make_store()
    order: list[str] = []

    def writer() -> None:
        store.put("ns", "k", b"thread")
        order.append("thread")

    with store.transaction() as txn:
        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(0.1)
        txn.put("ns", "k", b"txn")
        order.append("txn")
    thread.join(5)
    assert order == ["txn", "thread"]
    assert store.get("ns", "k") == b"thread"


def test_a_transaction_object_leaked_to_another_thread_is_refused(make_store: Factory) -> None:
    store = make_store()
    errors: list[BaseException] = []

    def intruder(txn: StoreTransaction) -> None:
        try:
            txn.put("ns", "k", b"intruder")
        except BaseException as exc:
            errors.append(exc)

    with store.transaction() as txn:
        thread = threading.Thread(target=intruder, args=(txn,))
        thread.start()
        time.sleep(0.05)
        txn.put("ns", "k", b"owner")
    thread.join(5)
    assert [type(e) for e in errors] == [StateError]
    assert store.get("ns", "k") == b"owner"


names = st.sampled_from(["a", "b", "ab", "b\u00e9", "c"])
namespaces = st.sampled_from(["n1", "n2"])
write = st.one_of(
    st.tuples(st.just("put"), namespaces, names, st.binary(max_size=16)),
    st.tuples(st.just("delete"), namespaces, names),
)
operation = st.one_of(
    write,
    st.tuples(st.just("txn"), st.lists(write, max_size=5), st.booleans()),
)


def apply_write(
    target: StoreTransaction | StateStore | dict[tuple[str, str], bytes], op: tuple[object, ...]
) -> object:
    if isinstance(target, dict):
        if op[0] == "put":
            target[(op[1], op[2])] = op[3]  # type: ignore[index, assignment]
            return None
        return target.pop((op[1], op[2]), None) is not None  # type: ignore[arg-type]
    if op[0] == "put":
        target.put(op[1], op[2], op[3])  # type: ignore[arg-type]
        return None
    return target.delete(op[1], op[2])  # type: ignore[arg-type]


def run(store: StateStore, ops: list[tuple[object, ...]]) -> list[object]:
    results: list[object] = []
    for op in ops:
        if op[0] != "txn":
            results.append(apply_write(store, op))
            continue
        try:
            with store.transaction() as txn:
                results.extend(apply_write(txn, w) for w in op[1])  # type: ignore[attr-defined]
                if op[2]:
                    raise LookupError("roll back")
        except LookupError:
            results.append("rolled back")
    for ns in ("n1", "n2"):
        results.append(store.keys(ns))
        results.extend(store.get(ns, k) for k in store.keys(ns))
        results.append(store.keys(ns, "b"))
    return results


def run_model(ops: list[tuple[object, ...]]) -> list[object]:
    model: dict[tuple[str, str], bytes] = {}
    results: list[object] = []
    for op in ops:
        if op[0] != "txn":
            results.append(apply_write(model, op))
            continue
        staged = dict(model)
        results.extend(apply_write(staged, w) for w in op[1])  # type: ignore[attr-defined]
        if op[2]:
            results.append("rolled back")
        else:
            model = staged
    for ns in ("n1", "n2"):
        keys = sorted(k for n, k in model if n == ns)
        results.append(keys)
        results.extend(model[(ns, k)] for k in keys)
        results.append([k for k in keys if k.startswith("b")])
    return results


@settings(max_examples=60, deadline=None)
@given(st.lists(operation, max_size=12))
def test_memory_and_sqlite_behave_like_a_dict(ops: list[tuple[object, ...]]) -> None:
    expected = run_model(ops)
    with MemoryStore() as memory, SqliteStore.open(":memory:", KEY) as sqlite:
        assert run(memory, ops) == expected
        assert run(sqlite, ops) == expected
