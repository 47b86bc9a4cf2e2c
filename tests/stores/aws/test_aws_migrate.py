"""`sealwire store migrate --to aws` and back, against moto, through the real CLI code
and the entry point of sealwire-store-aws (as an operator would run it)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sealwire.cli import main
from sealwire.config import open_home
from sealwire.store import SqliteStore, StoreKey
from sealwire_store_aws import open_aws_store


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return "m/" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]


def test_migrate_to_aws_and_back_loses_nothing(
    moto_url: str, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.delenv("SEALWIRE_STORE_KEY", raising=False)
    home = tmp_path / "agent"
    assert main(["--home", str(home), "init", "--name", "a"]) == 0
    _config, identity, store = open_home(home)
    with store.transaction() as txn:
        txn.put("ratchet", "peer-1", b"state after message 7")
        txn.put("groups", "g", bytes(range(256)) * 40)  # a group state: a blob in the manager
    store.close()

    aws = [
        "--store-option",
        f"prefix={prefix}",
        "--store-option",
        "region=us-east-1",
        "--store-option",
        f"endpoint_url={moto_url}",
    ]
    assert main(["--home", str(home), "store", "migrate", "--to", "aws", *aws]) == 0
    assert "moved 3 keys to the aws store" in capsys.readouterr().out
    assert "[agent.store]" in (home / "sealwire.toml").read_text()
    assert not (home / "state.db").exists()
    config, again, store = open_home(home)
    assert config.store.backend == "aws"
    assert again.agent_id == identity.agent_id
    assert store.get("ratchet", "peer-1") == b"state after message 7"
    store.put("ratchet", "peer-1", b"state after message 8")  # the agent goes on in AWS
    store.close()
    key = StoreKey.from_file(home / "store.key")
    options = {
        "prefix": prefix,
        "region": "us-east-1",
        "endpoint_url": moto_url,
        "cache": "witness.db",
    }
    with open_aws_store(options, key, tmp_path) as witness:  # another host sees it all
        assert witness.get("ratchet", "peer-1") == b"state after message 8"
        assert witness.get("groups", "g") == bytes(range(256)) * 40

    assert main(["--home", str(home), "store", "migrate", "--to", "sqlite"]) == 0
    config, again, store = open_home(home)
    assert config.store.backend == "sqlite"
    assert again.agent_id == identity.agent_id
    assert store.get("ratchet", "peer-1") == b"state after message 8"
    assert store.get("groups", "g") == bytes(range(256)) * 40
    store.close()
    with open_aws_store({**options, "cache": "witness2.db"}, key, tmp_path) as emptied:
        assert emptied.namespaces() == []  # the manager no longer holds a second copy
    with SqliteStore.open(home / "state.db.migrated-1", key) as backup:
        assert backup.get("ratchet", "peer-1") == b"state after message 7"


def test_init_store_aws_keeps_nothing_secret_but_the_key_on_disk(
    moto_url: str, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SEALWIRE_STORE_KEY", raising=False)
    home = tmp_path / "agent"
    argv = [
        "--home",
        str(home),
        "init",
        "--store",
        "aws",
        "--store-option",
        f"prefix={prefix}",
        "--store-option",
        "region=us-east-1",
        "--store-option",
        f"endpoint_url={moto_url}",
    ]
    assert main(argv) == 0
    assert not (home / "state.db").exists()
    _config, _identity, store = open_home(home)
    store.close()
    assert (
        main(
            [
                "--home",
                str(home),
                "init",
                "--store",
                "aws",
                "--store-option",
                f"prefix={prefix}",
                "--store-option",
                "region=us-east-1",
            ]
        )
        == 1
    )


def test_a_missing_option_is_named_when_the_file_is_read(tmp_path: Path, capsys) -> None:
    home = tmp_path / "agent"
    home.mkdir()
    (home / "sealwire.toml").write_text("[agent.store]\nbackend = 'aws'\nprefix = 'p'\n")
    assert main(["--home", str(home), "card"]) == 4
    assert "store backend 'aws' needs option 'region'" in capsys.readouterr().err
