"""StoreKey sources (env, file, providers), open_store URLs and the built-in backends."""

from __future__ import annotations

import base64
import copy
import pickle
from pathlib import Path

import pytest

from sealwire.errors import ConfigurationError
from sealwire.store import (
    BUILTIN_BACKENDS,
    MemoryStore,
    SqliteStore,
    StateStore,
    StoreBackend,
    StoreKey,
    open_store,
    resolve_store_key,
)

RAW = bytes(range(32))
ENV = "SEALWIRE_TEST_STORE_KEY"


def same(a: StoreKey, b: StoreKey) -> bool:
    return a.export_for_file() == b.export_for_file()


def test_generate_is_random_and_redacted() -> None:
    a, b = StoreKey.generate(), StoreKey.generate()
    assert not same(a, b)
    assert repr(a) == "StoreKey(<redacted>)" == str(a)
    exported = a.export_for_file()
    assert exported.endswith(b"\n") and len(base64.b64decode(exported)) == 32
    assert same(StoreKey.from_text(exported.decode()), a)
    with pytest.raises(TypeError):
        pickle.dumps(a)
    with pytest.raises(TypeError):
        copy.copy(a)


@pytest.mark.parametrize(
    "text",
    [
        RAW.hex(),
        RAW.hex().upper(),
        base64.b64encode(RAW).decode(),
        base64.urlsafe_b64encode(RAW).decode().rstrip("="),
        f"  {RAW.hex()}\n",
    ],
)
def test_from_env_accepts_hex_and_base64(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv(ENV, text)
    assert same(StoreKey.from_env(ENV), StoreKey.from_bytes(RAW))


@pytest.mark.parametrize(
    "text", ["", "not a key!", RAW[:16].hex(), base64.b64encode(RAW * 2).decode()]
)
def test_from_env_refuses_bad_values_without_echoing_them(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv(ENV, text)
    with pytest.raises(ConfigurationError) as info:
        StoreKey.from_env(ENV)
    assert not text or text not in str(info.value)


def test_from_bytes_checks_the_length() -> None:
    for bad in (b"", RAW[:31], RAW + b"\0"):
        with pytest.raises(ConfigurationError):
            StoreKey.from_bytes(bad)


def test_file_round_trip_raw_and_limits(tmp_path: Path) -> None:
    key = StoreKey.generate()
    path = tmp_path / "store.key"
    path.write_bytes(key.export_for_file())
    path.chmod(0o600)
    assert same(StoreKey.from_file(path), key)
    path.write_bytes(RAW)  # raw 32 bytes
    assert same(StoreKey.from_file(path), StoreKey.from_bytes(RAW))
    for bad in (b"", b"\xff" * 44, b"A" * 5000, RAW + b"\n\n"):
        path.write_bytes(bad)
        with pytest.raises(ConfigurationError):
            StoreKey.from_file(path)
    with pytest.raises(ConfigurationError):
        StoreKey.from_file(tmp_path / "absent.key")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_a_key_file_open_to_group_or_others_is_refused_with_the_chmod(
    tmp_path: Path, mode: int
) -> None:
    path = tmp_path / "store.key"
    path.write_bytes(StoreKey.generate().export_for_file())
    path.chmod(mode)
    with pytest.raises(ConfigurationError) as caught:
        StoreKey.from_file(path)
    assert f"run 'chmod 600 {path}'" in str(caught.value)
    assert f"mode {mode:04o}" in str(caught.value)
    assert "\n" not in str(caught.value)
    path.chmod(0o600)
    StoreKey.from_file(path)  # accepted once private


def test_resolve_order_env_then_file_then_providers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_key, file_key, provided = StoreKey.generate(), StoreKey.generate(), StoreKey.generate()
    path = tmp_path / "store.key"
    path.write_bytes(file_key.export_for_file())
    path.chmod(0o600)
    calls: list[str] = []

    def none() -> StoreKey | None:
        calls.append("none")
        return None

    def give() -> StoreKey | None:
        calls.append("give")
        return provided

    monkeypatch.setenv(ENV, env_key.export_for_file().decode())
    assert same(resolve_store_key(env_var=ENV, key_file=path, providers=[give]), env_key)
    monkeypatch.delenv(ENV)
    assert same(resolve_store_key(env_var=ENV, key_file=path, providers=[give]), file_key)
    assert same(resolve_store_key(env_var=ENV, providers=[none, give, none]), provided)
    assert calls == ["none", "give"]
    with pytest.raises(ConfigurationError, match="no store key"):
        resolve_store_key(env_var=ENV, providers=[none])


def test_failing_provider_is_a_configuration_error() -> None:
    def broken() -> StoreKey | None:
        raise RuntimeError("vault down")

    def wrong() -> StoreKey | None:
        return b"\0" * 32  # type: ignore[return-value]

    for provider in (broken, wrong):
        with pytest.raises(ConfigurationError):
            resolve_store_key(env_var=ENV, providers=[provider])


def test_builtin_backends() -> None:
    assert [b.name for b in BUILTIN_BACKENDS] == ["sqlite", "memory"]


@pytest.mark.parametrize("form", ["plain", "sqlite-url"])
def test_open_store_sqlite_paths(tmp_path: Path, form: str) -> None:
    path = tmp_path / "state.db"
    url = str(path) if form == "plain" else f"sqlite://{path}"
    key = StoreKey.generate()
    store = open_store(url, key)
    assert isinstance(store, SqliteStore)
    store.put("a", "b", b"c")
    store.close()
    with SqliteStore.open(path, key) as again:
        assert again.get("a", "b") == b"c"


def test_open_store_memory_forms() -> None:
    key = StoreKey.generate()
    memory = open_store("memory:", key)
    assert isinstance(memory, MemoryStore)
    sqlite_memory = open_store("sqlite://:memory:", key)
    assert isinstance(sqlite_memory, SqliteStore)
    memory.close()
    sqlite_memory.close()


def test_open_store_with_a_plugin_backend() -> None:
    seen: list[str] = []

    def opener(location: str, key: StoreKey) -> StateStore:
        seen.append(location)
        return MemoryStore()

    backends = {b.name: b for b in (*BUILTIN_BACKENDS, StoreBackend("redis", opener))}
    open_store("redis://cache:6379/0", StoreKey.generate(), backends=backends).close()
    open_store("REDIS:db1", StoreKey.generate(), backends=backends).close()
    assert seen == ["cache:6379/0", "db1"]
    with pytest.raises(ConfigurationError, match="no store backend"):
        open_store("redis://x", StoreKey.generate())  # not among the built-ins


@pytest.mark.parametrize("url", ["nosuch:thing", "sqlite:", "sqlite://"])
def test_open_store_refuses_unknown_or_empty(url: str) -> None:
    with pytest.raises(ConfigurationError):
        open_store(url, StoreKey.generate())
