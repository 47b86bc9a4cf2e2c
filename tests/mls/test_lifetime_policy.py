"""The KeyPackage lifetime cap as a group policy (issue 18, item 6).

The engine checks an added KeyPackage's lifetime against the cap it is given
(90 days by default, None: unbounded) and names the real reason when refusing;
the binding reads the cap from ``[bindings.mls] key_package_max_lifetime_days``
and makes it part of the group's policy: stored with the roster and carried in
every invitation, so every member applies the same one (a member applying
another would judge an Add differently and leave the group).
"""

from __future__ import annotations

import json
import os

import attrs
import pytest

from sealwire.errors import ConfigurationError
from sealwire.identity import Identity
from sealwire_mls._binding import LIFETIME_OPTION, lifetime_cap
from sealwire_mls._members import MAX_LIFETIME_CAP_DAYS, Invite, Roster
from sealwire_mls.agents import agent_key_package
from sealwire_mls.crypto import cipher_suite
from sealwire_mls.errors import MLSDecodeError, MLSProtocolError
from sealwire_mls.group import Group
from sealwire_mls.keypackage import MAX_LIFETIME_SECONDS, Lifetime, validate_key_package

NOW = 1_800_000_000
DAY = 86400


def _key_package(not_before: int, not_after: int):  # type: ignore[no-untyped-def]
    """A signed agent KeyPackage with the given lifetime."""
    made = agent_key_package(Identity.generate(), now=NOW)
    kp = made.key_package
    leaf = attrs.evolve(kp.leaf_node, lifetime=Lifetime(not_before, not_after), signature=b"")
    suite = cipher_suite(kp.cipher_suite)
    leaf = leaf.sign(suite, made.signature_priv)
    return attrs.evolve(kp, leaf_node=leaf).sign(suite, made.signature_priv), suite


def test_the_cap_is_the_callers_and_the_error_names_it() -> None:
    yearly, suite = _key_package(NOW - 60, NOW - 60 + 365 * DAY)
    with pytest.raises(MLSProtocolError, match="spans 365 days, longer than this group's cap"):
        validate_key_package(yearly, suite, now=NOW)
    validate_key_package(yearly, suite, now=NOW, max_lifetime=365 * DAY)
    forever, suite = _key_package(0, 2**63 - 1)  # ts-mls's default
    with pytest.raises(MLSProtocolError, match=r"unbounded.*key_package_max_lifetime_days"):
        validate_key_package(forever, suite, now=NOW, max_lifetime=365 * DAY)
    validate_key_package(forever, suite, now=NOW, max_lifetime=None)
    expired, suite = _key_package(NOW - 10 * DAY, NOW - DAY)
    with pytest.raises(MLSProtocolError, match="expired"):  # the window holds under any cap
        validate_key_package(expired, suite, now=NOW, max_lifetime=None)


def test_a_group_commits_and_processes_under_its_cap() -> None:
    a = agent_key_package(Identity.generate(), now=NOW)
    alice = Group.create(1, b"g", a.key_package.leaf_node, encryption_priv=a.encryption_priv,
                         signature_priv=a.signature_priv, random=os.urandom)  # fmt: skip
    yearly, _ = _key_package(NOW - 60, NOW - 60 + 365 * DAY)
    with pytest.raises(MLSProtocolError, match="cap of 90 days"):
        alice.commit(os.urandom, add=[yearly], now=NOW)
    _, welcome = alice.commit(os.urandom, add=[yearly], now=NOW, max_lifetime=None)
    assert welcome is not None


def test_the_binding_option() -> None:
    assert lifetime_cap({}) == MAX_LIFETIME_SECONDS
    assert lifetime_cap({LIFETIME_OPTION: 365}) == 365 * DAY
    assert lifetime_cap({LIFETIME_OPTION: "unbounded"}) is None
    for bad in (0, -1, MAX_LIFETIME_CAP_DAYS + 1, "365", 1.5, True, None, "forever"):
        with pytest.raises(ConfigurationError, match=LIFETIME_OPTION):
            lifetime_cap({LIFETIME_OPTION: bad})


@pytest.mark.parametrize("cap", [None, 365 * DAY, MAX_LIFETIME_SECONDS])
def test_invitations_and_rosters_carry_the_cap(cap: int | None) -> None:
    invite = Invite(group_id=b"g", seq=3, welcome=b"w", max_lifetime=cap)
    assert Invite.from_bytes(invite.to_bytes()).max_lifetime == cap
    a = agent_key_package(Identity.generate(), now=NOW)
    group = Group.create(1, b"g", a.key_package.leaf_node, encryption_priv=a.encryption_priv,
                         signature_priv=a.signature_priv, random=os.urandom)  # fmt: skip
    roster = Roster(group, {}, max_lifetime=cap)
    assert Roster.from_stored(group, {}, roster.policy_json()).max_lifetime == cap


def test_older_records_get_the_default_and_bad_caps_are_refused() -> None:
    record = json.loads(Invite(group_id=b"g", seq=1).to_bytes())
    del record["policy"]["keyPackageMaxLifetime"]  # an inviter from before the policy had it
    assert Invite.from_bytes(json.dumps(record).encode()).max_lifetime == MAX_LIFETIME_SECONDS
    for bad in (0, -5, "90", 1.5, True, MAX_LIFETIME_CAP_DAYS * DAY + 1):
        record["policy"]["keyPackageMaxLifetime"] = bad
        with pytest.raises(MLSDecodeError, match="lifetime cap"):
            Invite.from_bytes(json.dumps(record).encode())
    a = agent_key_package(Identity.generate(), now=NOW)
    group = Group.create(1, b"g", a.key_package.leaf_node, encryption_priv=a.encryption_priv,
                         signature_priv=a.signature_priv, random=os.urandom)  # fmt: skip
    stored = json.loads(Roster(group, {}).policy_json())
    del stored["policy"]["keyPackageMaxLifetime"]
    old = Roster.from_stored(group, {}, json.dumps(stored).encode())
    assert old.max_lifetime == MAX_LIFETIME_SECONDS
    stored["policy"]["keyPackageMaxLifetime"] = "x"
    with pytest.raises(MLSDecodeError):
        Roster.from_stored(group, {}, json.dumps(stored).encode())
