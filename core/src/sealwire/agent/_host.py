"""What the mailbox and group routers see of the agent that hosts them.

The routers take a :class:`RouterHost`, not the :class:`~sealwire.agent.Agent`:
its id, card and store, the check of a peer against configuration and trust,
a way to serve a channel a peer opened, dispatch of a request, the resumption
of a task interrupted by a restart, and the health board the agent exposes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from sealwire.agent._tasks import Receipt
from sealwire.binding import PeerIdentity, SecureChannel
from sealwire.codec import Request
from sealwire.identity import VerifiedCard
from sealwire.model import SendMessageResponse
from sealwire.store import StateStore

__all__ = ["RouterHost"]


class RouterHost(Protocol):
    """The agent as its routers see it."""

    @property
    def agent_id(self) -> str:
        """This agent's id."""

    @property
    def card(self) -> VerifiedCard:
        """This agent's signed card."""

    @property
    def store(self) -> StateStore:
        """This agent's state store."""

    def check_peer(self, peer: PeerIdentity) -> None:
        """Raise (TrustError) when configuration or the trust store refuses ``peer``."""

    def serve_incoming(self, channel: SecureChannel, binding: str) -> None:
        """Serve a channel ``peer`` opened (its first message reached this agent): calls
        this agent makes to that peer over ``binding`` reuse it."""

    def dispatch(
        self, request: Request, peer: PeerIdentity, *, receipt: Receipt | None = None
    ) -> AsyncIterator[Any]:
        """Serve one request; ``receipt`` (if given) is written in the transaction that
        records the task the request creates or resumes (see :data:`Receipt`)."""

    async def resume_task(self, task_id: str, peer: PeerIdentity) -> SendMessageResponse:
        """The answer owed for a task a request created before a restart: the task once
        it settles (its handler run again if the restart interrupted it)."""

    def report_health(self, component: str, problem: str | None) -> None:
        """Report ``component`` unhealthy for ``problem`` (no secret in it), or healthy
        again with ``None``."""
