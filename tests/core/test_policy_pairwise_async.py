"""A pairwise call never goes through a group binding: the policy's asynchronous rows
(peer offline; online but no live session binding in common) take mailbox bindings only.

Found with the group scaffold: a group binding also declares ``async`` (MLS does), and
when the peer's card listed it before its mailbox binding, a plain ``sealwire send``
picked it and failed ("no transport for scheme 'http'")."""

from __future__ import annotations

from typing import Any

import pytest

from sealwire.agent._card import build_card
from sealwire.binding import BindingInfo, GroupBinding, MailboxBinding, Property, Shape
from sealwire.errors import PolicyError
from sealwire.identity import Identity, VerifiedCard, verify_card
from sealwire.policy import Policy, PolicyConfig, Situation


async def _unused(*_args: Any) -> Any:
    raise AssertionError("the policy never calls a binding")


class Group(GroupBinding):
    info = BindingInfo(
        name="grp", version="1.0", major=1, shape=Shape.GROUP,
        properties=frozenset({Property.MUTUAL_AUTH, Property.GROUP, Property.ASYNC}),
    )  # fmt: skip
    create_group = add_members = remove_members = update = seal = post = process = _unused  # type: ignore[assignment]
    export_secret = join = members = epoch = _unused  # type: ignore[assignment]


class Mailbox(MailboxBinding):
    info = BindingInfo(
        name="box", version="1.0", major=1, shape=Shape.MAILBOX,
        properties=frozenset({Property.MUTUAL_AUTH, Property.ASYNC}),
    )  # fmt: skip
    seal = open = publish_prekeys = _unused  # type: ignore[assignment]


BINDINGS = {"grp": Group, "box": Mailbox}


def _card(*bindings: type) -> VerifiedCard:
    return verify_card(
        build_card(
            Identity.generate(),
            name="peer",
            description="d",
            version="0",
            bindings=bindings,
            listen_urls=[],
            relay_address="https://relay.example/mailbox/x",
            options={},
        )
    )


@pytest.mark.parametrize(
    "situation", [Situation(online=False), Situation(), Situation(online=True)]
)
def test_a_pairwise_call_takes_the_mailbox_binding_though_a_group_one_comes_first(
    situation: Situation,
) -> None:
    peer, local = _card(Group, Mailbox), _card(Group, Mailbox)
    decision = Policy(PolicyConfig(), BINDINGS).decide(peer, situation, local)
    assert decision.binding == "box"


def test_a_group_binding_alone_does_not_serve_a_pairwise_call() -> None:
    peer, local = _card(Group), _card(Group)
    with pytest.raises(PolicyError):
        Policy(PolicyConfig(), {"grp": Group}).decide(peer, Situation(online=False), local)
    decision = Policy(PolicyConfig(), {"grp": Group}).decide(peer, Situation(group=True), local)
    assert decision.binding == "grp"
