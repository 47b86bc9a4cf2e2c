"""The plugin system: every hook, entry points, duplicates, the block list, the docs."""

from __future__ import annotations

import ast
import inspect
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import attrs
import click
import pytest
from testonly_binding import PlaintextTestBinding, PlaintextTestPlugin

from sealwire import hookimpl, hookspecs
from sealwire.binding import Binding
from sealwire.cli import main
from sealwire.cli.output import state
from sealwire.components import (
    CliCommand,
    RelayBackendProvider,
    StoreKeyProvider,
    TransportProvider,
)
from sealwire.errors import ConfigurationError, SealwireError
from sealwire.plugins import BLOCK_ENV, load_registry
from sealwire.policy import PolicyRule
from sealwire.store import MemoryStore, StoreBackend, StoreKey

ROOT = Path(__file__).resolve().parents[2]
HOOKS = [
    n for n, _ in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("sealwire_")
]


def registry_with(*plugins: object):
    return load_registry(extra_plugins=plugins, load_entry_points=False)


def test_hook_sealwire_bindings() -> None:
    registry = registry_with(PlaintextTestPlugin())
    assert registry.binding("testonly-plaintext") is PlaintextTestBinding

    class Again:
        @hookimpl
        def sealwire_bindings(self) -> Sequence[type[Binding]]:
            return [PlaintextTestBinding]

    with pytest.raises(ConfigurationError, match=r"provided twice.*by plugin"):
        registry_with(PlaintextTestPlugin(), Again())


def test_hook_sealwire_transports() -> None:
    registry = registry_with()
    assert {"tcp", "ws", "udp"} <= set(registry.transports)
    assert registry.transport("udp").datagram

    class Duplicate:
        @hookimpl
        def sealwire_transports(self) -> Sequence[TransportProvider]:
            return [registry.transports["tcp"]]

    with pytest.raises(ConfigurationError, match="transport 'tcp' is provided twice"):
        registry_with(Duplicate())


def test_hook_sealwire_state_stores() -> None:
    backend = StoreBackend(name="custom", open=lambda _url, _key: MemoryStore())

    class Stores:
        @hookimpl
        def sealwire_state_stores(self) -> Sequence[StoreBackend]:
            return [backend]

    registry = registry_with(Stores())
    assert registry.store_backends["custom"] is backend
    assert {"sqlite", "memory"} <= set(registry.store_backends)


def test_hook_sealwire_store_key_providers(tmp_path: Path, monkeypatch) -> None:
    from sealwire.config import init_home, open_home

    key = StoreKey.generate()

    class Vault:
        @hookimpl
        def sealwire_store_key_providers(self) -> Sequence[StoreKeyProvider]:
            return [StoreKeyProvider(name="vault", load=lambda: key)]

    monkeypatch.delenv("SEALWIRE_STORE_KEY", raising=False)
    registry = registry_with(Vault())
    identity = init_home(tmp_path, name="v", registry=registry)
    assert not (tmp_path / "store.key").exists()  # the vault's key was used, none written
    _config, loaded, store = open_home(tmp_path, registry)
    store.close()
    assert loaded.agent_id == identity.agent_id
    with pytest.raises(SealwireError):
        open_home(tmp_path, registry_with())  # without the vault there is no key


def test_hook_sealwire_relay_backends() -> None:
    provider = RelayBackendProvider(name="custom-relay", open=lambda options: object())

    class Relay:
        @hookimpl
        def sealwire_relay_backends(self) -> Sequence[RelayBackendProvider]:
            return [provider]

    backends = registry_with(Relay()).relay_backends
    assert backends["custom-relay"] is provider
    assert set(backends) == {"custom-relay"}  # core brings none: sealwire-relay does


def test_hook_sealwire_policy_rules() -> None:
    rule = PolicyRule(
        name="always-first", decide=lambda peer, situation, cands: (cands[0], "the first one")
    )

    class Rules:
        @hookimpl
        def sealwire_policy_rules(self) -> Sequence[PolicyRule]:
            return [rule]

    assert registry_with(Rules()).policy_rules == (rule,)


def test_hook_sealwire_cli_commands(capsys) -> None:
    seen = []

    @click.command()
    @click.argument("who")
    def hello(who: str) -> None:
        """Say hello."""
        seen.append((who, state().home))

    class Hello:
        @hookimpl
        def sealwire_cli_commands(self) -> Sequence[CliCommand]:
            return [CliCommand(hello)]

    from sealwire.cli._app import build_cli

    registry = registry_with(Hello())
    assert registry.cli_commands["hello"].help == "Say hello."
    cli = build_cli(registry)
    assert cli.main(["--home", "h", "hello", "world"], standalone_mode=False, obj=registry) is None
    assert seen == [("world", Path("h"))]
    with pytest.raises(ValueError, match="needs a name"):
        CliCommand(click.Command(None))
    with pytest.raises(TypeError):
        CliCommand(lambda: 0)  # type: ignore[arg-type]


def test_a_plugin_commands_error_is_one_line_with_its_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    @click.command()
    @click.argument("what")
    def fail(what: str) -> None:
        """Fail as asked."""
        raise (ConfigurationError if what == "config" else SealwireError)(f"{what} went wrong")

    class Failing:
        @hookimpl
        def sealwire_cli_commands(self) -> Sequence[CliCommand]:
            return [CliCommand(fail)]

    import sealwire.cli

    registry = registry_with(Failing())
    monkeypatch.setattr(sealwire.cli, "load_registry", lambda **_kw: registry)
    capsys.readouterr()
    assert main(["fail", "other"]) == 1
    assert capsys.readouterr().err == "sealwire: error: other went wrong\n"
    assert main(["fail", "config", "--home", "h"]) == 4  # a global option after the command
    assert capsys.readouterr().err == "sealwire: error: config went wrong\n"
    assert main(["fail", "config", "--debug"]) == 4
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.endswith("sealwire: error: config went wrong\n")


def test_every_hook_has_a_test_here() -> None:
    source = Path(__file__).read_text()
    for hook in HOOKS:
        assert f"def test_hook_{hook}(" in source, hook


def test_every_hook_signature_is_documented() -> None:
    docs = (ROOT / "docs" / "writing-a-plugin.md").read_text()
    for hook in HOOKS:
        signature = inspect.signature(getattr(hookspecs, hook))
        rendered = f"def {hook}{signature}".replace("'", "")
        assert rendered in docs, rendered


def test_installed_plugins_load_through_entry_points() -> None:
    registry = load_registry()
    names = {p.name for p in registry.plugins}
    assert "builtins" in names


def test_block_list_keeps_a_plugin_out(monkeypatch) -> None:
    monkeypatch.setenv(BLOCK_ENV, "builtins")
    registry = load_registry(load_entry_points=False)
    assert "tcp" not in registry.transports


def test_plugins_command_lists_bindings(capsys) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "builtins" in out and "sealwire" in out and "binding" in out


def test_core_never_imports_a_plugin() -> None:
    for path in (ROOT / "core" / "src" / "sealwire").rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith("sealwire_"), f"{path} imports {name}"


def test_hooks_are_called_through_pluggy_so_wrappers_run() -> None:
    """A hook wrapper sees the call and what every plugin returned, and may change it."""
    seen: list[int] = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def sealwire_bindings(self) -> object:
            results = yield
            seen.append(len(results))
            return [*results, [PlaintextTestBinding]]

    registry = registry_with(Wrapper())
    assert seen == [0]  # no plugin here contributes a binding...
    assert registry.binding("testonly-plaintext") is PlaintextTestBinding  # ...the wrapper did


def _fake_distribution(root: Path, name: str, module_source: str) -> None:
    """An installed distribution ``name`` whose entry point ``name`` is ``module_source``."""
    module = f"fake_{name.replace('-', '_')}"
    (root / f"{module}.py").write_text(module_source)
    info = root / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[sealwire]\n{name} = {module}\n")


def _sealwire(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop(BLOCK_ENV, None)
    return subprocess.run(
        [sys.executable, "-m", "sealwire.cli", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("import no_such_module_anywhere\n", "failed to load: ModuleNotFoundError"),
        (
            "from sealwire import hookimpl\n\n@hookimpl\ndef sealwire_bindingz():\n    return []\n",
            "implements 'sealwire_bindingz' (did you mean 'sealwire_bindings'?), which Sealwire"
            " has no hook for (hooks: sealwire_bindings, sealwire_cli_commands,",
        ),
        (
            "from sealwire import hookimpl\n\n@hookimpl\ndef sealwire_bindings(extra):\n"
            "    return []\n",
            "Argument(s) {'extra'} are declared in the hookimpl but can not be found",
        ),
    ],
    ids=["import-error", "misspelled-hook", "wrong-signature"],
)
def test_a_broken_plugin_is_one_line_and_can_be_disabled(
    tmp_path: Path, source: str, problem: str
) -> None:
    _fake_distribution(tmp_path, "broken", source)
    refused = _sealwire(tmp_path, "plugins")
    assert refused.returncode == 4  # a configuration error (docs/cli.md)
    (line,) = refused.stderr.strip().splitlines()
    assert "plugin 'broken' (from fake_broken 1.0)" in line and problem in line
    assert "--disable-plugin broken" in line and f"{BLOCK_ENV}=broken" in line
    helped = _sealwire(tmp_path, "--help")  # help still works, with the line on stderr
    assert helped.returncode == 0 and "Usage: sealwire" in helped.stdout
    assert "--disable-plugin broken" in helped.stderr
    disabled = _sealwire(tmp_path, "--disable-plugin", "broken", "plugins")
    assert disabled.returncode == 0, disabled.stderr
    assert "builtins" in disabled.stdout and "broken" not in disabled.stdout


def _offering(cls: type) -> object:
    class Offers:
        @hookimpl
        def sealwire_bindings(self) -> Sequence[type]:
            return [cls]

    return Offers()


def test_a_binding_is_a_type_of_its_shape_with_every_method() -> None:
    """The contract is explicit: a class is one of its shape's types, with every
    abstract method implemented, or the plugin is refused when it loads."""
    from sealwire.binding import BindingInfo, MailboxBinding, Shape

    class WrongShape(PlaintextTestBinding):
        info = attrs.evolve(PlaintextTestBinding.info, name="wrong", shape=Shape.MAILBOX)

    with pytest.raises(ConfigurationError, match="shape mailbox but is none of MailboxBinding"):
        registry_with(_offering(WrongShape))

    class HalfDone(MailboxBinding):
        info = BindingInfo(
            name="half", version="0", major=1, shape=Shape.MAILBOX, properties=frozenset()
        )

        async def seal(self, *a: object) -> bytes:
            return b""

    with pytest.raises(ConfigurationError, match="does not implement: open, publish_prekeys"):
        registry_with(_offering(HalfDone))
