"""[agent.store] in sealwire.toml, `sealwire init --store` and `sealwire store migrate`.

A store plugin is registered in process: its backend ``elsewhere`` keeps the
state in a SQLite file named by its required option ``file`` (so migrating to
it and back is a real move between two stores).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

import sealwire.cli
from sealwire import hookimpl
from sealwire.cli import main
from sealwire.config import AgentConfig, StoreConfig, init_home, migrate_store, open_home
from sealwire.errors import ConfigurationError
from sealwire.plugins import Registry, load_registry
from sealwire.store import SqliteStore, StateStore, StoreBackend, StoreKey, StoreOption


def _open_elsewhere(options: Mapping[str, str], key: StoreKey, home: Path) -> StateStore:
    return SqliteStore.open(home / options["file"], key)


class ElsewherePlugin:
    @hookimpl
    def sealwire_state_stores(self) -> Sequence[StoreBackend]:
        return [
            StoreBackend(
                "elsewhere",
                lambda location, key: SqliteStore.open(location, key),
                options=(
                    StoreOption(name="file", help="the file, in the home", required=True),
                    StoreOption(name="note", help="ignored"),
                ),
                open_configured=_open_elsewhere,
            )
        ]


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    monkeypatch.delenv("SEALWIRE_STORE_KEY", raising=False)
    # without the store plugins installed in the workspace: as a user who lacks them
    loaded = load_registry(
        extra_plugins=[ElsewherePlugin()], block=["store-aws", "store-vault", "store-gcp"]
    )
    monkeypatch.setattr(sealwire.cli, "load_registry", lambda: loaded)
    return loaded


def test_the_store_table_round_trips() -> None:
    config = AgentConfig(name="a", store=StoreConfig(backend="aws", options={"region": "x"}))
    text = config.to_toml()
    assert "[agent.store]" in text
    again = AgentConfig.from_toml(text)
    assert again.store == StoreConfig(backend="aws", options={"region": "x"})
    assert "[agent.store]" not in AgentConfig().to_toml()
    assert AgentConfig.from_toml(AgentConfig().to_toml()).store == StoreConfig()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[agent.store]\nbackend = 'aws'\n", "needs the package sealwire-store-aws"),
        ("[agent.store]\nbackend = 'vault'\n", "needs the package sealwire-store-vault"),
        ("[agent.store]\nbackend = 'gcp'\n", "needs the package sealwire-store-gcp"),
        ("[agent.store]\nbackend = 'nosuch'\n", "no store backend 'nosuch'"),
        ("[agent.store]\nregion = 'x'\n", "agent.store.backend must be set to the name"),
        ("[agent]\nstore = 'aws'\n", "agent.store must be a table, not 'aws'"),
        ("[agent.store]\nbackend = 'elsewhere'\n", "needs option 'file'"),
        ("[agent.store]\nbackend = 'elsewhere'\nfile = 'a'\ncolour = 1\n", "no option 'colour'"),
        ("[agent.store]\nbackend = 'elsewhere'\nfile = ['a']\n", "option 'file' must be a string"),
        ("[agent.store]\nbackend = 'sqlite'\nfile = 'a'\n", "sqlite store takes no options"),
    ],
)
def test_a_bad_store_table_is_one_clear_error_when_read(
    registry: Registry, text: str, message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        AgentConfig.from_toml(text, source="x.toml", registry=registry)
    assert message in str(caught.value)
    assert str(caught.value).startswith("x.toml: ")


def test_init_store_writes_the_table_and_keeps_the_state_there(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "agent"
    argv = ["--home", str(home), "init", "--name", "a", "--store", "elsewhere"]
    assert main([*argv, "--store-option", "file=remote.db"]) == 0
    config = AgentConfig.from_toml((home / "sealwire.toml").read_text(), registry=registry)
    assert config.store == StoreConfig(backend="elsewhere", options={"file": "remote.db"})
    assert not (home / "state.db").exists()
    assert (home / "remote.db").exists()
    _config, identity, store = open_home(home, registry)
    store.close()
    assert main(["--home", str(home), "card"]) == 0
    assert identity.agent_id in capsys.readouterr().out
    assert main([*argv, "--store-option", "file=remote.db"]) == 1  # already an agent


def test_init_refuses_a_missing_option_before_creating_anything(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "agent"
    assert main(["--home", str(home), "init", "--store", "elsewhere"]) == 4  # configuration
    assert "needs option 'file'" in capsys.readouterr().err
    assert not home.exists()
    assert main(["--home", str(home), "init", "--store", "aws"]) == 4
    assert "pip install sealwire-store-aws" in capsys.readouterr().err
    assert main(["--home", str(home), "init", "--store-option", "a=b"]) == 4


def test_migrate_moves_the_state_and_back_verified(registry: Registry, tmp_path: Path) -> None:
    home = tmp_path / "agent"
    identity = init_home(home, name="a", registry=registry)
    _c, _i, store = open_home(home, registry)
    with store.transaction() as txn:
        txn.put("ratchet", "peer-1", b"state after message 7")
        txn.put("groups", "g", b"epoch 3")
    store.close()

    assert (
        main(
            [
                "--home",
                str(home),
                "store",
                "migrate",
                "--to",
                "elsewhere",
                "--store-option",
                "file=remote.db",
            ]
        )
        == 0
    )
    assert not (home / "state.db").exists()
    assert (home / "state.db.migrated-1").exists()  # the old file is kept as a backup
    config, again, store = open_home(home, registry)
    assert config.store.backend == "elsewhere"
    assert again.agent_id == identity.agent_id
    assert store.get("ratchet", "peer-1") == b"state after message 7"
    store.put("ratchet", "peer-1", b"state after message 8")  # the agent goes on there
    store.close()

    assert migrate_store(home, StoreConfig(), registry) == 3
    config, again, store = open_home(home, registry)
    assert config.store == StoreConfig()
    assert again.agent_id == identity.agent_id
    assert store.get("ratchet", "peer-1") == b"state after message 8"
    assert store.get("groups", "g") == b"epoch 3"
    store.close()
    with SqliteStore.open(home / "remote.db", StoreKey.from_file(home / "store.key")) as old:
        assert old.namespaces() == []  # a store migrated from is emptied


def test_migrate_refuses_a_target_holding_other_values(registry: Registry, tmp_path: Path) -> None:
    home = tmp_path / "agent"
    init_home(home, name="a", registry=registry)
    key = StoreKey.from_file(home / "store.key")
    with SqliteStore.open(home / "remote.db", key) as other:
        other.put("identity", "self", b"someone else")
    target = StoreConfig(backend="elsewhere", options={"file": "remote.db"})
    with pytest.raises(Exception, match="already holds identity/self"):
        migrate_store(home, target, registry)
    _config, _identity, store = open_home(home, registry)  # still the SQLite agent
    store.close()
    assert (home / "state.db").exists()
