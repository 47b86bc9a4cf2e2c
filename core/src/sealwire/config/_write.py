"""``sealwire.toml`` written by a TOML writer (tomlkit), never by string formatting.

:meth:`sealwire.config.AgentConfig.to_toml` builds a new file from these tables
(``[policy]`` last, with commented hints, so a line appended to the file lands in
it); :func:`with_store` rewrites an existing file's ``[agent.store]`` and keeps
everything else the person wrote, comments and key order included.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tomlkit
from tomlkit.items import Table

from sealwire.policy import PolicyConfig

__all__ = ["POLICY_HINTS", "plain", "policy_table", "store_table", "with_store"]

POLICY_HINTS = (
    'require = ["mutual_auth", "forward_secrecy"]',
    "deny_bindings = []",
    "deny_peers = []",
)
"""Commented lines ``init`` writes in ``[policy]``: what can go there."""


def store_table(backend: str, options: Mapping[str, str]) -> Table:
    """``[agent.store]``: the backend, then its options in name order."""
    table = tomlkit.table()
    table.add("backend", backend)
    for name, value in sorted(options.items()):
        table.add(name, value)
    return table


def policy_table(policy: PolicyConfig) -> Table:
    """The policy's values that differ from the defaults, then the hints."""
    default = PolicyConfig()
    table = tomlkit.table()
    if policy.require != default.require:
        table.add("require", sorted(p.value for p in policy.require))
    if policy.deny_bindings:
        table.add("deny_bindings", sorted(policy.deny_bindings))
    if policy.deny_peers:
        table.add("deny_peers", sorted(policy.deny_peers))
    if policy.prefer != default.prefer:
        table.add("prefer", list(policy.prefer))
    if policy.per_message_forward_secrecy:
        table.add("per_message_forward_secrecy", True)
    for hint in POLICY_HINTS:
        table.add(tomlkit.comment(hint))
    if policy.peers:
        peers = tomlkit.table(is_super_table=True)
        for agent_id, override in sorted(policy.peers.items()):
            entry = tomlkit.table()
            if override.binding is not None:
                entry.add("binding", override.binding)
            if override.require:
                entry.add("require", sorted(p.value for p in override.require))
            if override.deny_bindings:
                entry.add("deny_bindings", sorted(override.deny_bindings))
            if override.per_message_forward_secrecy is not None:
                entry.add("per_message_forward_secrecy", override.per_message_forward_secrecy)
            peers.add(agent_id, entry)
        table.add("peers", peers)
    return table


def plain(table: Any) -> Any:
    """A mapping as tomlkit items (tuples and frozensets as arrays)."""
    if isinstance(table, dict) or hasattr(table, "items"):
        out = tomlkit.table()
        for key, value in table.items():
            out.add(key, plain(value))
        return out
    if isinstance(table, tuple | list | frozenset | set):
        return [plain(v) for v in table]
    return table


def with_store(text: str, backend: str | None, options: Mapping[str, str]) -> str:
    """``text`` (a ``sealwire.toml``) with its ``[agent.store]`` replaced by ``backend``
    and ``options`` (removed when ``backend`` is None: the default store); every other
    line as it was."""
    doc = tomlkit.parse(text)
    if "agent" not in doc:
        doc.add("agent", tomlkit.table())
    agent = doc["agent"]
    assert isinstance(agent, Table)  # the file was read and checked before
    if "store" in agent:
        del agent["store"]
    if backend is not None:
        agent.add("store", store_table(backend, options))
    return tomlkit.dumps(doc)
