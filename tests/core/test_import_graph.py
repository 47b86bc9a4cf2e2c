"""The import rules between distributions, read from the source (ARCHITECTURE, layout).

* Core never imports the relay server, and neither does any plugin: agents and
  bindings see the relay through ``sealwire.relay`` (the port and its client).
* No distribution imports another's private modules (``pkg._name``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {
    "sealwire": ROOT / "core" / "src" / "sealwire",
    "sealwire_relay": ROOT / "relay" / "src" / "sealwire_relay",
    **{
        f"sealwire_{p.name}": p / "src" / f"sealwire_{p.name}"
        for p in sorted((ROOT / "plugins").iterdir())
        if (p / "src").is_dir()
    },
}


def _imports(package: Path) -> Iterator[tuple[Path, str]]:
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                yield from ((path, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield path, node.module


@pytest.mark.parametrize("package", sorted(set(SOURCES) - {"sealwire_relay"}))
def test_no_agent_side_code_imports_the_relay_server(package: str) -> None:
    for path, name in _imports(SOURCES[package]):
        assert name.split(".")[0] != "sealwire_relay", f"{path} imports {name}"


@pytest.mark.parametrize("package", sorted(SOURCES))
def test_no_distribution_imports_another_ones_private_modules(package: str) -> None:
    for path, name in _imports(SOURCES[package]):
        top, *rest = name.split(".")
        if top in SOURCES and top != package:
            assert not any(part.startswith("_") for part in rest), f"{path} imports {name}"


def test_the_sources_are_all_found() -> None:
    assert {"sealwire", "sealwire_relay", "sealwire_mls", "sealwire_noise"} <= set(SOURCES)
    assert all(path.is_dir() for path in SOURCES.values())


def _module_graph(package: str) -> dict[str, set[str]]:
    """Module -> modules of the same distribution it imports (``TYPE_CHECKING`` ones too:
    a circle of types is still a circle of design)."""
    root = SOURCES[package]
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [
                    f"{node.module}.{alias.name}"
                    if f"{node.module}.{alias.name}" in modules
                    else node.module
                    for alias in node.names
                ]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize("package", sorted(SOURCES))
def test_no_import_circles(package: str) -> None:
    assert _circles(_module_graph(package)) == []


def test_a_circle_is_found() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
