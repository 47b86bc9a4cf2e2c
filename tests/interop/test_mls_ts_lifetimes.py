"""KeyPackage lifetime caps against ts-mls's defaults (issue 18, item 6).

ts-mls makes KeyPackages whose lifetime runs from 0 to 2**63 - 1 seconds unless
told otherwise; mls-rs makes 365-day ones. Sealwire's default cap (90 days,
RFC 9420 §7.2 leaves it to the application) refuses both, naming the real
reason; a group whose policy chooses another cap (the MLS binding's
``key_package_max_lifetime_days``: ``"unbounded"``, or 365) adds such members,
on our side as committer and as receiver of a ts-mls member's commit. The ts-mls
peers and members are the ones of ``test_mls_ts_interop.py`` (Node.js and
``npm ci --prefix tests/interop/mls_ts`` needed; never skipped).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from sealwire_mls.errors import MLSProtocolError
from sealwire_mls.keypackage import MAX_LIFETIME_SECONDS

_spec = importlib.util.spec_from_file_location(
    "mls_ts_interop_harness", Path(__file__).parent / "test_mls_ts_interop.py"
)
assert _spec is not None and _spec.loader is not None
harness: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)
ts_peer = harness.ts_peer  # the fixture: ts-mls peers in Node, killed at teardown

DAY = 86400
#: What mls-rs makes by default, and a cap an operator admitting it would choose.
ONE_YEAR = 365 * DAY


class CappedMember(harness.OurMember):  # type: ignore[misc]
    """Our member, committing and processing under a group's lifetime cap."""

    def __init__(self, cap: int | None) -> None:
        super().__init__()
        self.cap = cap

    def _commit(self, **changes: Any) -> tuple[bytes, bytes | None]:
        message, welcome = self.group.commit(
            harness.os.urandom, now=harness.NOW, max_lifetime=self.cap, **changes
        )
        self.group.merge_pending_commit()
        return message, welcome

    def receive(self, message: bytes) -> bytes | int:
        event = self.group.process(message, now=harness.NOW, max_lifetime=self.cap)
        if isinstance(event, harness.ApplicationMessage):
            return bytes(event.data)
        return harness.REMOVED if event.removed_me else int(event.epoch)


class DefaultTsMember(harness.TheirMember):  # type: ignore[misc]
    """A ts-mls member whose KeyPackage is the one ts-mls makes by default (or ``lifetime``)."""

    def __init__(self, peer: Any, lifetime: tuple[int, int] | None = None) -> None:
        self.peer, self.public = peer, False
        bounds = {} if lifetime is None else {"not_before": lifetime[0], "not_after": lifetime[1]}
        answer = peer.call("key_package", identity=b"ts-mls default", **bounds)
        self._kp = bytes.fromhex(answer["key_package"])


def test_the_default_cap_refuses_ts_mls_defaults_and_says_why(ts_peer: Any) -> None:
    ours = CappedMember(MAX_LIFETIME_SECONDS)
    ours.create()
    unbounded = DefaultTsMember(ts_peer())
    with pytest.raises(MLSProtocolError, match="unbounded, longer than this group's cap of 90"):
        ours.add([unbounded.key_package()])
    # Our side checks lifetimes at the harness's NOW (taken once, when the module was
    # imported); ts-mls at its real clock, later: a span from NOW suits both.
    yearly = DefaultTsMember(ts_peer(), lifetime=(harness.NOW - 60, harness.NOW - 60 + ONE_YEAR))
    with pytest.raises(MLSProtocolError, match=r"spans 365 days, longer than .* 90 days"):
        ours.add([yearly.key_package()])
    assert ours.group.epoch == 0  # nothing staged or applied


@pytest.mark.parametrize("cap", [None, ONE_YEAR], ids=["unbounded", "365 days"])
def test_a_group_policy_cap_adds_ts_mls_members(ts_peer: Any, cap: int | None) -> None:
    """Under the cap its operator chose, our group adds ts-mls members made with ts-mls's
    default KeyPackages (or mls-rs's 365 days), and processes a ts-mls member adding
    another; every member agrees on the epoch, secrets and roster and reads all."""
    lifetime = None if cap is None else (harness.NOW - 60, harness.NOW - 60 + ONE_YEAR)
    fleet = harness.Fleet(CappedMember(cap))
    fleet.add(0, {1: DefaultTsMember(ts_peer(), lifetime), 2: CappedMember(cap)})
    fleet.add(1, {3: DefaultTsMember(ts_peer(), lifetime)})  # ts-mls commits, we process
    fleet.update(2)
    fleet.remove(3, [1])
    fleet.check(rounds=2)
