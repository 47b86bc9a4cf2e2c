"""`sealwire plugin new` end to end: the package it writes installs in a fresh
virtual environment, `sealwire plugins` lists it, its contract tests pass, and
`sealwire send` carries a task over it between two agent processes (the session
binding directly, the mailbox binding through a relay process)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from ports import free_port

from sealwire.errors import ConfigurationError
from sealwire.scaffold import new_plugin

ROOT = Path(__file__).resolve().parents[2]
HANDLER = (
    "async def handle(task):\n    await task.complete('served by ' + task.message.parts[0].text)\n"
)


def _run(*args: str | Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


def _generate_and_install_all(
    tmp_path: Path, plugins: list[tuple[str, str]], *, beside: tuple[Path | str, ...] = ()
) -> tuple[list[Path], Path, Path, dict[str, str]]:
    """``sealwire plugin new`` for each (name, shape), then one fresh virtual
    environment with core, ``beside`` and the new packages installed: the packages'
    folders, its python and its sealwire command, and the environment to run them in."""
    uv = shutil.which("uv")
    assert uv is not None, "the test command installs uv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEALWIRE_", "VIRTUAL_ENV"))}
    packages = []
    for name, shape in plugins:
        _run(sys.executable, "-m", "sealwire.cli", "plugin", "new", name, "--shape", shape,
             "--into", tmp_path, cwd=tmp_path, env=env)  # fmt: skip
        packages.append(tmp_path / f"sealwire-{name}")
    venv = tmp_path / "venv"
    _run(uv, "venv", "-q", venv, "--python", sys.executable, cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    editable = [f"{ROOT / 'core'}[testing]", *beside, *(f"{p}[test]" for p in packages)]
    installs = [arg for path in editable for arg in ("-e", path)]
    _run(uv, "pip", "install", "-q", "--python", python, *installs, cwd=tmp_path, env=env)
    return packages, python, venv / "bin" / "sealwire", env


def _generate_and_install(
    tmp_path: Path, name: str, shape: str, *, beside: tuple[Path | str, ...] = ()
) -> tuple[Path, Path, Path, dict[str, str]]:
    """:func:`_generate_and_install_all` for one package."""
    packages, python, sealwire, env = _generate_and_install_all(
        tmp_path, [(name, shape)], beside=beside
    )
    return packages[0], python, sealwire, env


def test_a_new_plugin_installs_passes_its_contract_and_carries_a_task(tmp_path: Path) -> None:
    package, python, sealwire, env = _generate_and_install(
        tmp_path, "my-binding", "session", beside=(ROOT / "plugins" / "noise",)
    )
    listed = json.loads(_run(sealwire, "plugins", "--json", cwd=tmp_path, env=env).stdout)
    assert {"name": "my-binding", "distribution": "sealwire-my-binding", "version": "0.1.0"} in (
        listed["plugins"]
    )
    tested = _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=package, env=env)
    assert "6 passed" in tested.stdout

    url = f"tcp://127.0.0.1:{free_port()}"
    _carry_a_task(tmp_path, sealwire, env, "my-binding", server_init=["--listen", url], prefer=True)


def _carry_a_task(
    tmp_path: Path,
    sealwire: Path,
    env: dict[str, str],
    binding: str,
    *,
    init: list[str] | None = None,
    server_init: list[str] | None = None,
    prefer: bool = False,
) -> None:
    """Two agents (``init`` options for both, ``server_init`` for the server's), the server
    serving: ``sealwire send`` completes a task over ``binding`` and says so."""
    (tmp_path / "handler.py").write_text(HANDLER)
    for home, extra in (("server", server_init or []), ("client", [])):
        _run(sealwire, "--home", home, "init", "--name", home, *(init or []), *extra,
             cwd=tmp_path, env=env)  # fmt: skip
        if prefer:
            with (tmp_path / home / "sealwire.toml").open("a") as config:
                config.write(f'prefer = ["{binding}"]\n')  # [policy] is the file's last table
    card = tmp_path / "server-card.json"
    card.write_text(_run(sealwire, "--home", "server", "card", cwd=tmp_path, env=env).stdout)
    server = subprocess.Popen(
        [sealwire, "--home", "server", "serve", "--handler", "handler:handle"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None and "is serving" in server.stdout.readline()
        sent = _run(sealwire, "--home", "client", "send", card, "hi", cwd=tmp_path, env=env)
        task = json.loads(sent.stdout)
        assert task["status"]["state"] == "TASK_STATE_COMPLETED", sent.stdout
        assert f"# via {binding} " in sent.stderr
    finally:
        server.terminate()
        server.communicate(timeout=20)


def test_a_bad_name_or_an_existing_folder_is_refused(tmp_path: Path) -> None:
    for name in ("My", "a_b", "-x", "x-", "a" * 40):
        with pytest.raises(ConfigurationError, match="plugin name"):
            new_plugin(name, shape="session", into=tmp_path)
    with pytest.raises(ConfigurationError, match="no template for shape"):
        new_plugin("fine", shape="nosuch", into=tmp_path)
    new_plugin("fine", shape="session", into=tmp_path)
    with pytest.raises(ConfigurationError, match="exists"):
        new_plugin("fine", shape="session", into=tmp_path)


def test_a_new_store_installs_passes_its_contract_and_keeps_an_agent(tmp_path: Path) -> None:
    package, python, sealwire, env = _generate_and_install(tmp_path, "folder-store", "store")
    listed = json.loads(_run(sealwire, "plugins", "--json", cwd=tmp_path, env=env).stdout)
    assert {
        "name": "folder-store",
        "distribution": "sealwire-folder-store",
        "version": "0.1.0",
    } in (listed["plugins"])
    tested = _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=package, env=env)
    assert "30 passed, 4 skipped" in tested.stdout  # state store and managed store suites

    _run(sealwire, "--home", "agent", "init", "--name", "kept", "--store", "folder-store",
         "--store-option", "folder=shared", cwd=tmp_path, env=env)  # fmt: skip
    assert (tmp_path / "agent" / "shared" / "head").is_file()  # the state went to the folder
    card = json.loads(_run(sealwire, "--home", "agent", "card", cwd=tmp_path, env=env).stdout)
    assert card["name"] == "kept"


def test_new_mailbox_group_and_transport_plugins_install_and_pass_their_contracts(
    tmp_path: Path,
) -> None:
    """One environment for the three: each package installs beside the others, is
    listed, and passes its contract suite as generated (the mailbox and group suites
    on sealwire-relay's loopback relay), with warnings as errors."""
    shapes = [("my-mailbox", "mailbox"), ("my-group", "group"), ("my-link", "transport")]
    packages, python, sealwire, env = _generate_and_install_all(
        tmp_path, shapes, beside=(f"{ROOT / 'relay'}[testing]",)
    )
    listed = json.loads(_run(sealwire, "plugins", "--json", cwd=tmp_path, env=env).stdout)
    plugins = {(p["name"], p["distribution"], p["version"]) for p in listed["plugins"]}
    for name, _shape in shapes:
        assert (name, f"sealwire-{name}", "0.1.0") in plugins
    bindings = {(b["name"], b["version"], b["uri"], b["shape"]) for b in listed["bindings"]}
    assert ("my-mailbox", "0.1.0", "urn:sealwire:binding:my-mailbox:1", "mailbox") in bindings
    assert ("my-group", "0.1.0", "urn:sealwire:binding:my-group:1", "group") in bindings
    expected = {"my-mailbox": "10 passed", "my-group": "7 passed", "my-link": "8 passed"}
    for package, (name, _shape) in zip(packages, shapes, strict=True):
        tested = _run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error",
                      cwd=package, env=env)  # fmt: skip
        assert expected[name] in tested.stdout, tested.stdout

    # A task over the mailbox binding, between two agent processes and a relay process
    # (the group binding is installed too: the policy must not take it for a pairwise call).
    port = free_port()
    (tmp_path / "relay.toml").write_text(
        f'[relay]\nhost = "127.0.0.1"\nport = {port}\nidentity = "{tmp_path / "relay.key"}"\n'
        f'backend = "sqlite"\n[relay.sqlite]\npath = "{tmp_path / "relay.sqlite3"}"\n'
    )
    relay_url = f"http://127.0.0.1:{port}"
    with (tmp_path / "relay.log").open("wb") as log:
        relay = subprocess.Popen(
            [python, "-m", "sealwire_relay", "--config", tmp_path / "relay.toml"],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_for_relay(relay_url, relay)
        _carry_a_task(tmp_path, sealwire, env, "my-mailbox", init=["--relay", relay_url])
    finally:
        relay.terminate()
        relay.wait(timeout=20)


RELAY_START = 60.0
"""Seconds a relay process may take to answer on a loaded 2-core machine."""


def _wait_for_relay(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + RELAY_START
    while True:
        try:
            with urllib.request.urlopen(url + "/v1/info", timeout=2):
                return
        except OSError:
            assert process.poll() is None, "the relay process exited"
            assert time.monotonic() < deadline, "the relay did not answer"
            time.sleep(0.05)  # polling a starting process: no event to wait for
