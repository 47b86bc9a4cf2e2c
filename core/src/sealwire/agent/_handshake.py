"""Secure sessions over a core transport, opened and accepted: the hello exchange
(:mod:`sealwire.agent._session`), then the binding's handshake, bounded in time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import cast
from urllib.parse import urlsplit

from sealwire import telemetry
from sealwire.agent._session import (
    HELLO_TIMEOUT,
    HelloCookies,
    accept_message,
    parse_hello,
    read_hello,
    refuse_message,
    send_hello,
    send_hello_datagram,
)
from sealwire.binding import (
    Binding,
    CarrierBinding,
    DatagramBinding,
    Negotiation,
    SecureChannel,
    SessionBinding,
)
from sealwire.errors import AuthenticationError, PolicyError, SealwireError
from sealwire.identity import VerifiedCard
from sealwire.plugins import Registry
from sealwire.policy import Decision, Policy
from sealwire.transport import DatagramEndpoint, FrameStream

__all__ = ["HANDSHAKE_TIMEOUT", "accept_session", "open_session", "session_binding"]

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 15.0
"""Seconds a handshake may take before the connection is dropped."""

BindingFor = Callable[[Negotiation], SessionBinding | DatagramBinding]
"""The binding that serves a negotiation (PolicyError when none may)."""


async def accept_session(
    carrier: FrameStream | DatagramEndpoint,
    *,
    datagram: bool,
    cookies: HelloCookies,
    binding_for: BindingFor,
) -> SecureChannel | None:
    """Read the hello, check it (``binding_for``), answer, then handshake: the channel,
    or None when the session was refused (logged, the carrier closed).

    Over datagrams a hello without a valid cookie for its source address is
    answered with one, and its endpoint closed at once (see ``_session``).
    """
    try:
        if datagram:
            first = await asyncio.wait_for(carrier.receive(), HELLO_TIMEOUT)
            negotiation = parse_hello(first)
            if not cookies.valid(first, carrier.peer_address):
                await carrier.send(cookies.issue(carrier.peer_address))
                await carrier.close()
                return None
        else:
            negotiation = await read_hello(carrier)
        try:
            binding = binding_for(negotiation)
        except PolicyError as exc:
            await carrier.send(refuse_message(str(exc)))
            raise
        await carrier.send(accept_message())
        handshake = (
            cast(DatagramBinding, binding).respond_datagram(
                cast(DatagramEndpoint, carrier), negotiation
            )
            if datagram
            else cast(SessionBinding, binding).respond(cast(FrameStream, carrier), negotiation)
        )
        return await asyncio.wait_for(handshake, HANDSHAKE_TIMEOUT)
    except (SealwireError, TimeoutError) as exc:
        log.info("refused an incoming session: %s", exc)
        await carrier.close()
        return None


def session_binding(
    policy: Policy,
    bindings: Mapping[str, Binding],
    card: VerifiedCard,
    negotiation: Negotiation,
    *,
    datagram: bool,
) -> SessionBinding | DatagramBinding:
    """The binding of ``bindings`` that serves an incoming ``negotiation`` to the agent of
    ``card``, as ``policy`` allows, over datagrams or streams; else PolicyError."""
    cls = policy.check_incoming(negotiation, card)
    binding = bindings.get(cls.info.name)
    if datagram and isinstance(binding, DatagramBinding):
        return binding
    if not datagram and isinstance(binding, SessionBinding):
        return binding
    carrier = "datagrams" if datagram else "streams"
    raise PolicyError(f"binding {cls.info.name} does not serve sessions over {carrier}")


async def open_session(
    registry: Registry, binding: Binding, peer: VerifiedCard, decision: Decision
) -> SecureChannel:
    """A session with ``peer`` over ``binding`` at the decision's URL: on the binding's
    own carrier, or after a hello on a core transport of ``registry`` (a telemetry span,
    and a refusal counted)."""
    attributes = {"sealwire.binding": decision.binding, "sealwire.peer": peer.agent_id}
    with telemetry.span("sealwire.handshake", attributes):
        try:
            return await _open(registry, binding, peer, decision)
        except (AuthenticationError, PolicyError) as exc:
            telemetry.count("sealwire.refusals", 1, {"reason": type(exc).__name__})
            raise


async def _open(
    registry: Registry, binding: Binding, peer: VerifiedCard, decision: Decision
) -> SecureChannel:
    negotiation = decision.negotiation
    if isinstance(binding, CarrierBinding):
        if urlsplit(decision.url).scheme not in binding.info.schemes:
            raise PolicyError(f"binding {decision.binding} does not carry {decision.url}")
        return await binding.connect(decision.url, peer, negotiation)
    provider = registry.transport(urlsplit(decision.url).scheme)
    if provider.datagram:
        if not isinstance(binding, DatagramBinding):
            raise PolicyError(f"binding {decision.binding} does not run over datagrams")
        endpoint = await provider.connect(decision.url)
        try:
            await send_hello_datagram(endpoint, negotiation)
            return await asyncio.wait_for(
                binding.initiate_datagram(endpoint, peer, negotiation), HANDSHAKE_TIMEOUT
            )
        except BaseException:
            await endpoint.close()
            raise
    if not isinstance(binding, SessionBinding):
        raise PolicyError(f"binding {decision.binding} cannot carry calls to one peer")
    stream = await provider.connect(decision.url)
    try:
        await send_hello(stream, negotiation)
        return await asyncio.wait_for(
            binding.initiate(stream, peer, negotiation), HANDSHAKE_TIMEOUT
        )
    except BaseException:
        await stream.close()
        raise
