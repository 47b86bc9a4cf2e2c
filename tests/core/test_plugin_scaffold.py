"""`sealwire plugin new` end to end: the package it writes installs in a fresh
virtual environment, `sealwire plugins` lists it, its contract tests pass, and
`sealwire send` carries a task over it between two agent processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
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


def _generate_and_install(
    tmp_path: Path, name: str, shape: str, *, beside: tuple[Path, ...] = ()
) -> tuple[Path, Path, Path, dict[str, str]]:
    """``sealwire plugin new``, then a fresh virtual environment with core, ``beside``
    and the new package installed: the package's folder, its python and its sealwire
    command, and the environment to run them in."""
    uv = shutil.which("uv")
    assert uv is not None, "the test command installs uv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEALWIRE_", "VIRTUAL_ENV"))}
    _run(sys.executable, "-m", "sealwire.cli", "plugin", "new", name, "--shape", shape,
         "--into", tmp_path, cwd=tmp_path, env=env)  # fmt: skip
    package = tmp_path / f"sealwire-{name}"
    venv = tmp_path / "venv"
    _run(uv, "venv", "-q", venv, "--python", sys.executable, cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    editable = [f"{ROOT / 'core'}[testing]", *beside, f"{package}[test]"]
    installs = [arg for path in editable for arg in ("-e", path)]
    _run(uv, "pip", "install", "-q", "--python", python, *installs, cwd=tmp_path, env=env)
    return package, python, venv / "bin" / "sealwire", env


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

    (tmp_path / "handler.py").write_text(HANDLER)
    url = f"tcp://127.0.0.1:{free_port()}"
    for home, extra in (("server", ["--listen", url]), ("client", [])):
        _run(sealwire, "--home", home, "init", "--name", home, *extra, cwd=tmp_path, env=env)
        with (tmp_path / home / "sealwire.toml").open("a") as config:
            config.write('prefer = ["my-binding"]\n')  # [policy] is the file's last table
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
        assert "# via my-binding " in sent.stderr
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
    assert "21 passed" in tested.stdout

    _run(sealwire, "--home", "agent", "init", "--name", "kept", "--store", "folder-store",
         "--store-option", "folder=shared", cwd=tmp_path, env=env)  # fmt: skip
    assert (tmp_path / "agent" / "shared" / "head").is_file()  # the state went to the folder
    card = json.loads(_run(sealwire, "--home", "agent", "card", cwd=tmp_path, env=env).stdout)
    assert card["name"] == "kept"
