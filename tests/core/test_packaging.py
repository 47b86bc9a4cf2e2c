"""Every distribution is ready for PyPI (issue 16, item 2), read from its files.

`scripts/check` also builds each one and runs ``twine check --strict`` on the
results; these tests say what the metadata must hold, and that what a
distribution imports is what it declares.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = sorted(
    [
        ROOT / "core",
        ROOT / "relay",
        *(p for group in ("plugins", "stores") for p in (ROOT / group).iterdir() if p.is_dir()),
    ]
)
IDS = [str(d.relative_to(ROOT)) for d in DISTRIBUTIONS]


def _project(dist: Path) -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((dist / "pyproject.toml").read_text())["project"]
    return project


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return match.group(0).lower().replace("_", "-")


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=IDS)
def test_metadata_fit_for_an_index(dist: Path) -> None:
    project = _project(dist)
    assert project["license"] == "Apache-2.0"
    assert (dist / "LICENSE").read_bytes() == (ROOT / "LICENSE").read_bytes()
    readme = (dist / project["readme"]).read_text()
    assert len(readme.splitlines()) >= 20, "the README is the package's PyPI page"
    assert project["authors"] and project["keywords"]
    assert "Typing :: Typed" in project["classifiers"]
    assert {"Homepage", "Changelog", "Issues"} <= set(project["urls"])
    assert (dist / "CHANGELOG.md").is_file()
    (package,) = (dist / "src").iterdir()
    assert (package / "py.typed").is_file()


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=IDS)
def test_what_a_distribution_imports_it_declares(dist: Path) -> None:
    """Each third-party module imported is provided by a dependency or an extra."""
    project = _project(dist)
    declared = {_name(r) for r in project.get("dependencies", [])}
    for extra in project.get("optional-dependencies", {}).values():
        declared |= {_name(r) for r in extra}
    providers = packages_distributions()
    (package,) = (dist / "src").iterdir()
    own = {package.name, "sealwire"}
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in own:
                    continue
                provided = {d.lower().replace("_", "-") for d in providers.get(top, [])}
                assert provided & declared, f"{path.name} imports {name}: not declared"


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=IDS)
def test_no_private_module_or_name_of_another_package_is_imported(dist: Path) -> None:
    """Third-party packages are used through their public API (issue 16, item 2):
    no ``pkg._module`` and no ``from pkg import _name``."""
    (package,) = (dist / "src").iterdir()
    found = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules, names = [alias.name for alias in node.names], []
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules, names = [node.module], [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                if module.split(".")[0].startswith("sealwire") or module == "__future__":
                    continue
                parts = [*module.split("."), *names]
                if any(part.startswith("_") for part in parts):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {'.'.join(parts)}")
    assert found == []


STORE_SDKS = ("boto3", "botocore", "google.cloud", "google.api_core", "hvac")


def test_loading_the_plugins_imports_no_store_sdk() -> None:
    """Every process loads every plugin: a store's SDK is imported only to open it."""
    code = (
        "import sys\n"
        "from sealwire.plugins import load_registry\n"
        "registry = load_registry()\n"
        "assert {'aws', 'gcp', 'vault'} <= set(registry.store_backends)\n"
        f"print([m for m in {STORE_SDKS!r} if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def test_a_store_package_still_exports_its_sdk_names() -> None:
    import sealwire_store_aws
    import sealwire_store_gcp
    import sealwire_store_vault

    assert sealwire_store_aws.AwsSecretsBackend.__name__ == "AwsSecretsBackend"
    assert callable(sealwire_store_gcp.open_gcp_store)
    assert sealwire_store_vault.KEY_PATH_ENV
    with pytest.raises(AttributeError):
        _ = sealwire_store_vault.no_such_name  # type: ignore[attr-defined]
