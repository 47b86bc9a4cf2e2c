"""RFC 9420 passive-client vectors (``mls/passive-client-*.json``) against :class:`Group`.

Format: per case a ``cipher_suite``, ``external_psks``, the joiner's
``key_package`` and its ``signature_priv``/``encryption_priv``/``init_priv``,
a ``welcome``, an optional out-of-band ``ratchet_tree``, the
``initial_epoch_authenticator`` and ``epochs`` (proposals, a commit and the
resulting ``epoch_authenticator``).

Checks: the client joins from the Welcome (with the given tree or the one in
the GroupInfo, and the external PSKs), its epoch authenticator matches; then
for each epoch it processes the proposals and the commit and its epoch
authenticator matches.
"""

from __future__ import annotations

from typing import Any

import pytest

from sealwire.testing.vectors import load_json
from sealwire_mls.crypto import cipher_suite
from sealwire_mls.group import Group
from sealwire_mls.tree import RatchetTree
from sealwire_mls.welcome import MLSMessage

h = bytes.fromhex


def _check(v: dict[str, Any]) -> None:
    suite = cipher_suite(v["cipher_suite"])
    key_package = MLSMessage.from_bytes(h(v["key_package"])).body
    welcome = MLSMessage.from_bytes(h(v["welcome"])).body
    tree = RatchetTree.decode(suite, h(v["ratchet_tree"])) if v["ratchet_tree"] else None
    group = Group.join(
        welcome,
        key_package,
        init_priv=h(v["init_priv"]),
        encryption_priv=h(v["encryption_priv"]),
        signature_priv=h(v["signature_priv"]),
        ratchet_tree=tree,
        external_psks={h(p["psk_id"]): h(p["psk"]) for p in v["external_psks"]},
    )
    assert group.epoch_authenticator().hex() == v["initial_epoch_authenticator"]
    for epoch in v["epochs"]:
        for proposal in epoch["proposals"]:
            group.process(h(proposal))
        group.process(h(epoch["commit"]))
        assert group.epoch_authenticator().hex() == epoch["epoch_authenticator"]


@pytest.mark.parametrize(
    "name", ["passive-client-welcome", "passive-client-handling-commit", "passive-client-random"]
)
def test_passive_client_vectors(name: str, tally: Any, suite_supported: Any) -> None:
    counter = tally(name)
    counter.run(
        load_json(f"mls/{name}.json"),
        _check,
        name=lambda v: f"suite {v['cipher_suite']}",
        supported=suite_supported,
    )
    counter.assert_all_passed()
