"""The state store contract suite, public for store authors.

Every store (memory, SQLite, each secrets-manager plugin) runs the same tests::

    class TestMyStoreContract(StateStoreContract):
        shared = True  # two opens of one location see one state

        def open_store(self, location: Path) -> StateStore:
            return MyStore.open(prefix=str(location), key=KEY)

``open_store(location)`` opens a store for ``location`` (a fresh folder per
test; the same location must give the same state when ``persistent``). A store
that cannot meet a test overrides it with ``@pytest.mark.xfail(reason=...)``
and says why.

What the suite holds a store to: names and values are checked the same way;
keys sort by code point; a transaction commits all of its writes or none and
reads its own writes; misuse is a :class:`~sealwire.errors.StateError`; one
transaction at a time per handle; a value survives a reopen; and, for a store
two handles (or processes) can share, no update is ever lost: a transaction
that read what another handle changed meanwhile either waits for it or fails
with :class:`~sealwire.store.StoreConflictError`, never overwrites it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sealwire.store._base as store_base
from sealwire.errors import StateError
from sealwire.store import (
    EnumerableStore,
    StateStore,
    StoreConflictError,
    StoreError,
    StoreTransaction,
)

__all__ = ["StateStoreContract", "run_model", "run_ops"]

Factory = Callable[..., StateStore]

OTHER_THREAD_WAIT = 2.0
"""Seconds a test lets another thread's write proceed before going on: a store
that serializes writers blocks that thread until then (the outcome is checked,
not the time)."""


class StateStoreContract:
    """Subclass and define :meth:`open_store`; set the class flags to what the store is."""

    persistent: ClassVar[bool] = True
    """A value put survives closing the store and opening the same location again."""
    shared: ClassVar[bool] = True
    """Two opens of one location at the same time see one state (a file, a server)."""
    model_examples: ClassVar[int] = 40
    """Random operation sequences compared against a dict (fewer for a slow remote store)."""

    def open_store(self, location: Path) -> StateStore:
        raise NotImplementedError

    @pytest.fixture
    def make_store(self, tmp_path: Path) -> Iterator[Factory]:
        opened: list[StateStore] = []
        counter = [0]

        def factory(*, same: bool = False) -> StateStore:
            if not same:
                counter[0] += 1
            store = self.open_store(tmp_path / f"store{counter[0]}")
            opened.append(store)
            return store

        yield factory
        for store in opened:
            store.close()

    # -- one handle ---------------------------------------------------------------------

    def test_get_put_delete_keys(self, make_store: Factory) -> None:
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

    def test_namespaces_are_listed(self, make_store: Factory) -> None:
        store = make_store()
        if not isinstance(store, EnumerableStore):
            pytest.skip("the store does not list namespaces")
        store.put("b", "k", b"1")
        store.put("a", "k", b"2")
        store.put("c", "k", b"3")
        store.delete("c", "k")
        assert store.namespaces() == ["a", "b"]

    def test_keys_are_sorted_by_code_point_and_filtered_by_prefix(
        self, make_store: Factory
    ) -> None:
        store = make_store()
        names = ["b", "a", "ab", "a\u00e9", "a\U0001f600", "aZ", "\u4e2d", "A"]
        with store.transaction() as txn:
            for name in names:
                txn.put("ns", name, name.encode())
        assert store.keys("ns") == sorted(names)
        assert store.keys("ns", "a") == sorted(n for n in names if n.startswith("a"))
        assert store.keys("ns", "a\u00e9") == ["a\u00e9"]
        assert store.keys("ns", "zzz") == []

    def test_transaction_commits_all_and_reads_its_own_writes(self, make_store: Factory) -> None:
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

    def test_transaction_rolls_back_on_exception(self, make_store: Factory) -> None:
        store = make_store()
        store.put("ns", "a", b"before")
        with pytest.raises(RuntimeError), store.transaction() as txn:
            txn.put("ns", "a", b"after")
            txn.put("ns", "b", b"new")
            txn.delete("ns", "a")
            raise RuntimeError("abort")
        assert store.get("ns", "a") == b"before"
        assert store.get("ns", "b") is None

    def test_misuse_is_a_state_error(self, make_store: Factory) -> None:
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
        [
            ("", "k"),
            ("ns", ""),
            ("n\x00s", "k"),
            ("ns", "\ud800"),
            ("ns", "k" * 1025),
            (b"ns", "k"),
        ],
    )
    def test_invalid_names_are_refused(self, make_store: Factory, namespace: str, key: str) -> None:
        store = make_store()
        for call in (
            lambda: store.put(namespace, key, b"v"),
            lambda: store.get(namespace, key),
            lambda: store.delete(namespace, key),
        ):
            with pytest.raises(StoreError):
                call()

    def test_invalid_values_are_refused(self, make_store: Factory) -> None:
        store = make_store()
        with pytest.raises(StoreError):
            store.put("ns", "k", "text")  # type: ignore[arg-type]
        with pytest.raises(StoreError):
            store.put("ns", "k", b"x" * (store_base.MAX_VALUE_SIZE + 1))
        store.put("ns", "k", bytearray(b"x" * 10))  # type: ignore[arg-type]
        assert store.get("ns", "k") == b"x" * 10

    def test_a_large_value_round_trips(self, make_store: Factory) -> None:
        store = make_store()
        big = bytes(range(256)) * 1024  # 256 KiB: past one secret's size in every manager
        store.put("ns", "big", big)
        store.put("ns", "small", b"s")
        assert store.get("ns", "big") == big
        store.put("ns", "big", big[::-1])
        assert store.get("ns", "big") == big[::-1]

    def test_a_transaction_excludes_other_threads(self, make_store: Factory) -> None:
        store = make_store()
        order: list[str] = []

        def writer() -> None:
            store.put("ns", "k", b"thread")
            order.append("thread")

        with store.transaction() as txn:
            thread = threading.Thread(target=writer)
            thread.start()
            thread.join(0.1)  # a store that let the writer in would have let it finish
            txn.put("ns", "k", b"txn")
            order.append("txn")
        thread.join(30)
        assert order == ["txn", "thread"]
        assert store.get("ns", "k") == b"thread"

    def test_a_transaction_object_leaked_to_another_thread_is_refused(
        self, make_store: Factory
    ) -> None:
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
            thread.join(0.05)
            txn.put("ns", "k", b"owner")
        thread.join(30)
        assert [type(e) for e in errors] == [StateError]
        assert store.get("ns", "k") == b"owner"

    # -- persistence and sharing ----------------------------------------------------------

    def test_a_value_survives_reopening(self, make_store: Factory) -> None:
        if not self.persistent:
            pytest.skip("the store does not persist")
        store = make_store()
        with store.transaction() as txn:
            txn.put("ns", "a", b"1")
            txn.put("other", "b", b"2")
        store.close()
        again = make_store(same=True)
        assert again.get("ns", "a") == b"1"
        assert again.get("other", "b") == b"2"

    def test_two_handles_never_lose_an_update(self, make_store: Factory) -> None:
        """Handle A reads a counter in a transaction; handle B increments it meanwhile;
        A's increment then either waits for B (A sees 1 and writes 2: a store that
        serializes writers) or fails with StoreConflictError (compare-and-set lost):
        never does A's write hide B's."""
        if not self.shared:
            pytest.skip("two opens do not share one state")
        first = make_store()
        first.put("ns", "counter", b"0")
        second = make_store(same=True)
        done: list[object] = []

        def increment_on_second() -> None:
            try:
                with second.transaction() as txn:
                    value = int(txn.get("ns", "counter") or b"0")
                    txn.put("ns", "counter", str(value + 1).encode())
                done.append("ok")
            except BaseException as exc:
                done.append(exc)

        thread: threading.Thread | None = None
        committed = 0
        try:
            with first.transaction() as txn:
                value = int(txn.get("ns", "counter") or b"0")
                thread = threading.Thread(target=increment_on_second)
                thread.start()
                thread.join(OTHER_THREAD_WAIT)
                txn.put("ns", "counter", str(value + 1).encode())
            committed += 1
        except StoreConflictError:
            pass
        assert thread is not None
        thread.join(60)
        committed += done.count("ok")
        assert all(d == "ok" or isinstance(d, StoreConflictError) for d in done), done
        reader = make_store(same=True)
        assert int(reader.get("ns", "counter") or b"0") == committed >= 1

    def test_disjoint_writes_of_two_handles_both_land(self, make_store: Factory) -> None:
        if not self.shared:
            pytest.skip("two opens do not share one state")
        first = make_store()
        second = make_store(same=True)
        first.put("ns", "a", b"1")
        second.put("ns", "b", b"2")
        first.put("ns", "c", b"3")
        reader = make_store(same=True)
        assert [reader.get("ns", k) for k in ("a", "b", "c")] == [b"1", b"2", b"3"]

    # -- against a model --------------------------------------------------------------------

    def test_behaves_like_a_dict(self, make_store: Factory) -> None:
        @settings(
            max_examples=self.model_examples,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(st.lists(_operation, max_size=10))
        def check(ops: list[tuple[object, ...]]) -> None:
            store = make_store()
            assert run_ops(store, ops) == run_model(ops)
            store.close()

        check()


_names = st.sampled_from(["a", "b", "ab", "b\u00e9", "c"])
_namespaces = st.sampled_from(["n1", "n2"])
_write = st.one_of(
    st.tuples(st.just("put"), _namespaces, _names, st.binary(max_size=16)),
    st.tuples(st.just("delete"), _namespaces, _names),
)
_operation = st.one_of(
    _write,
    st.tuples(st.just("txn"), st.lists(_write, max_size=5), st.booleans()),
)


def _apply(
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


def run_ops(store: StateStore, ops: list[tuple[object, ...]]) -> list[object]:
    """Apply ``ops`` (puts, deletes, transactions committed or rolled back); what was seen."""
    results: list[object] = []
    for op in ops:
        if op[0] != "txn":
            results.append(_apply(store, op))
            continue
        try:
            with store.transaction() as txn:
                results.extend(_apply(txn, w) for w in op[1])  # type: ignore[attr-defined]
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
    """What :func:`run_ops` sees on a store that behaves like a dict."""
    model: dict[tuple[str, str], bytes] = {}
    results: list[object] = []
    for op in ops:
        if op[0] != "txn":
            results.append(_apply(model, op))
            continue
        staged = dict(model)
        results.extend(_apply(staged, w) for w in op[1])  # type: ignore[attr-defined]
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
