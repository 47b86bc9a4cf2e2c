"""``sealwire plugin new``: a working, installable plugin package to start from.

:func:`new_plugin` writes ``sealwire-<name>/`` from the templates of one shape:
``session``, a session binding on sealwire-noise's handshake core; ``mailbox``,
a mailbox binding sealing each frame with HPKE to the peer's card key and
signing it; ``group``, a group binding whose epochs are keyed by a secret the
committer picks and seals to each member with HPKE; ``transport``, frames over
Unix domain sockets; ``store``, a state store behind core's ``ManagedStore``
keeping its secrets in a folder. Each
has a pyproject with the entry point, the implementation, the contract tests, a
README and a CI workflow, and passes Sealwire's contract suite as generated;
its README says how to install, test and use it.
"""

from __future__ import annotations

import re
from pathlib import Path

from sealwire.errors import ConfigurationError

__all__ = ["SHAPES", "new_plugin"]

SHAPES = ("session", "mailbox", "group", "transport", "store")
"""The shapes with a template (the CLI's ``--shape`` choices)."""
_TEMPLATES = Path(__file__).parent
_NAME = re.compile(r"[a-z][a-z0-9]{0,30}(-[a-z0-9]{1,30}){0,3}")
"""A binding name: lower-case words joined by hyphens (it names the distribution,
the package and the card's binding URI)."""


def new_plugin(name: str, *, shape: str, into: Path) -> Path:
    """Write the package ``sealwire-<name>`` in ``into``; its folder. Refuses a bad
    name, an unknown shape or an existing folder (nothing is overwritten)."""
    if not _NAME.fullmatch(name):
        raise ConfigurationError(
            f"plugin name {name!r}: use lower-case letters and digits, words joined by '-'"
        )
    if shape not in SHAPES:  # (the folder "common" is not a shape)
        raise ConfigurationError(f"no template for shape {shape!r} (have: {', '.join(SHAPES)})")
    target = into / f"sealwire-{name}"
    if target.exists():
        raise ConfigurationError(f"{target} exists: choose another name or folder")
    words = name.split("-")
    values = {
        "name": name,
        "package": "sealwire_" + "_".join(words),
        "Class": "".join(w.capitalize() for w in words),
        "title": " ".join(w.capitalize() for w in words),
    }
    templates = [
        (root, template)
        for root in (_TEMPLATES / "common", _TEMPLATES / shape)
        for template in sorted(root.rglob("*.tmpl"))
    ]
    for root, template in templates:
        relative = template.relative_to(root).as_posix().removesuffix(".tmpl")
        relative = relative.replace("@package@", values["package"])
        if relative.startswith("github/"):  # kept without the dot in the wheel
            relative = "." + relative
        text = template.read_text()
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return target
