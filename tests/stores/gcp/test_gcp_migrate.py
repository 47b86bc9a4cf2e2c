"""`sealwire store migrate --to gcp` and back, and `init --store gcp`, against the REST fixture."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sealwire.cli import main
from sealwire.config import open_home
from sealwire.store import StoreKey
from sealwire_store_gcp import open_gcp_store


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return "m-" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]


def test_migrate_to_gcp_and_back_loses_nothing(
    gcp_url: str, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.delenv("SEALWIRE_STORE_KEY", raising=False)
    home = tmp_path / "agent"
    assert main(["--home", str(home), "init", "--name", "a"]) == 0
    _config, identity, store = open_home(home)
    with store.transaction() as txn:
        txn.put("ratchet", "peer-1", b"state after message 7")
        txn.put("groups", "g", bytes(range(256)) * 40)
    store.close()

    gcp = [
        "--store-option",
        "project=test",
        "--store-option",
        f"prefix={prefix}",
        "--store-option",
        f"endpoint={gcp_url}",
        "--store-option",
        "anonymous=true",
    ]
    assert main(["--home", str(home), "store", "migrate", "--to", "gcp", *gcp]) == 0
    assert "moved 3 keys to the gcp store" in capsys.readouterr().out
    config, again, store = open_home(home)
    assert (config.store.backend, again.agent_id) == ("gcp", identity.agent_id)
    store.put("ratchet", "peer-1", b"state after message 8")
    store.close()
    key = StoreKey.from_file(home / "store.key")
    options = {
        "project": "test",
        "prefix": prefix,
        "endpoint": gcp_url,
        "anonymous": "true",
        "cache": "witness.db",
    }
    with open_gcp_store(options, key, tmp_path) as witness:
        assert witness.get("ratchet", "peer-1") == b"state after message 8"
        assert witness.get("groups", "g") == bytes(range(256)) * 40

    assert main(["--home", str(home), "store", "migrate", "--to", "sqlite"]) == 0
    config, again, store = open_home(home)
    assert (config.store.backend, again.agent_id) == ("sqlite", identity.agent_id)
    assert store.get("ratchet", "peer-1") == b"state after message 8"
    assert store.get("groups", "g") == bytes(range(256)) * 40
    store.close()
    with open_gcp_store({**options, "cache": "witness2.db"}, key, tmp_path) as emptied:
        assert emptied.namespaces() == []


def test_init_store_gcp(
    gcp_url: str, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEALWIRE_STORE_KEY", raising=False)
    home = tmp_path / "agent"
    argv = ["--home", str(home), "init", "--store", "gcp", "--store-option", "project=test"]
    gcp = [
        "--store-option",
        f"prefix={prefix}",
        "--store-option",
        f"endpoint={gcp_url}",
        "--store-option",
        "anonymous=true",
    ]
    assert main([*argv, *gcp]) == 0
    assert not (home / "state.db").exists()
    _config, _identity, store = open_home(home)
    store.close()
    assert main([*argv]) == 1  # prefix missing
