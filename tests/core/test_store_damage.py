"""A damaged SQLite store raises the store's typed errors, never KeyError or TypeError
(issue 18, item 5).

Damage is written through a raw sqlite3 connection (cells of the wrong type, TEXT
that is not UTF-8, a negative schema version) or as bytes over the file; a
hypothesis fuzz test does both, and every store call may only answer or raise a
:class:`~sealwire.errors.SealwireError` (StoreError, or AuthenticationError for
a value that does not open).
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealwire.errors import SealwireError
from sealwire.store import SqliteStore, StoreError, StoreKey

KEY = StoreKey.generate()
# Enough cases to hit every table and cell type; each opens a file (a few ms).
FUZZ = settings(max_examples=80, deadline=None)


def _store(folder: Path) -> Path:
    path = folder / "state.db"
    with SqliteStore.open(path, KEY) as store:
        store.put("ns", "a", b"value a")
        store.put("ns", "b", b"value b")
        store.put("other", "c", b"value c")
    return path


def _write(path: Path, sql: str, *args: Any) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(sql, args)
    finally:
        conn.close()


def _calls(store: SqliteStore) -> list[Callable[[], object]]:
    return [
        lambda: store.keys("ns"),
        lambda: store.keys("ns", "a"),
        lambda: store.namespaces(),
        lambda: store.get("ns", "a"),
        lambda: store.get("ns", "b"),
        lambda: store.put("ns", "d", b"new"),
        lambda: store.delete("other", "c"),
    ]


def _only_typed_errors(path: Path) -> None:
    """Open the store and use it: answers, or SealwireError subclasses only."""
    try:
        store = SqliteStore.open(path, KEY)
    except SealwireError:
        return
    with store:
        for call in _calls(store):
            with contextlib.suppress(SealwireError):
                call()


@pytest.mark.parametrize(
    ("sql", "args", "where"),
    [
        ("UPDATE sealwire_schema SET version = -1", (), "open"),  # KeyError before
        ("INSERT INTO kv VALUES ('ns', X'FF80', X'00')", (), "keys"),  # TypeError before
        ("INSERT INTO kv VALUES (X'FF', 'k', X'00')", (), "namespaces"),  # b'\xff' as a name
        ("INSERT INTO kv VALUES ('ns', CAST(X'FF80' AS TEXT), X'00')", (), "keys"),
        ("UPDATE sealwire_schema SET version = CAST(X'FF' AS TEXT)", (), "open"),
    ],
)
def test_damaged_cells_are_store_errors(tmp_path: Path, sql: str, args: Any, where: str) -> None:
    path = _store(tmp_path)
    _write(path, sql, *args)
    if where == "open":
        with pytest.raises(StoreError):
            SqliteStore.open(path, KEY)
        return
    with SqliteStore.open(path, KEY) as store, pytest.raises(StoreError, match=r"damaged|UTF-8"):
        store.keys("ns") if where == "keys" else store.namespaces()


cells = (
    st.none()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.binary(max_size=40)
)
# (table, column, the row it damages); a NOT NULL column refuses None (a raw write error)
TARGETS = [
    ("sealwire_schema", "version", "1"),
    ("meta", "name", "name = 'key-check'"),
    ("meta", "value", "name = 'key-check'"),
    ("kv", "namespace", "key = 'a'"),
    ("kv", "key", "key = 'b'"),
    ("kv", "value", "key = 'a'"),
]


@FUZZ
@given(target=st.sampled_from(TARGETS), cell=cells, as_text=st.booleans())
def test_fuzzed_cells_give_only_typed_errors(
    target: tuple[str, str, str], cell: object, as_text: bool
) -> None:
    table, column, where = target
    with tempfile.TemporaryDirectory() as folder:
        path = _store(Path(folder))
        value = "CAST(? AS TEXT)" if as_text else "?"  # TEXT holding any bytes, UTF-8 or not
        with contextlib.suppress(sqlite3.Error):  # a constraint the raw write breaks
            _write(path, f"UPDATE {table} SET {column} = {value} WHERE {where}", cell)
        _only_typed_errors(path)


@FUZZ
@given(offset=st.integers(min_value=0, max_value=16_383), junk=st.binary(min_size=1, max_size=64))
def test_fuzzed_file_bytes_give_only_typed_errors(offset: int, junk: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = _store(Path(folder))
        data = bytearray(path.read_bytes())
        data[offset : offset + len(junk)] = junk
        path.write_bytes(bytes(data[: max(len(data), offset)]))
        _only_typed_errors(path)
