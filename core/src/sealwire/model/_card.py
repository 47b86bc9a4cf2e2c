"""The agent card and its parts (A2A v1.0 spec §4.4, §8).

``security_schemes`` and ``security_requirements`` are kept as checked JSON
objects (their OpenAPI-like shapes are not interpreted by Sealwire, which
authenticates peers by its own bindings).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

from sealwire.model._message import blank_to_none, empty_to_none

__all__ = [
    "AgentCapabilities",
    "AgentCard",
    "AgentCardSignature",
    "AgentExtension",
    "AgentInterface",
    "AgentProvider",
    "AgentSkill",
]


@frozen(kw_only=True)
class AgentInterface:
    """One way to reach the agent (spec §4.4.6): where, by which binding, which A2A version.

    Sealwire bindings name themselves in ``protocol_binding`` as
    ``urn:sealwire:binding:<name>:<major>``.
    """

    url: str
    protocol_binding: str
    protocol_version: str
    tenant: str | None = field(default=None, converter=blank_to_none)


@frozen
class AgentProvider:
    """The organization behind the agent (spec §4.4.2)."""

    url: str
    organization: str


@frozen(kw_only=True)
class AgentExtension:
    """An extension the agent supports (spec §4.4.4); ``required`` refuses clients without it."""

    uri: str
    description: str | None = field(default=None, converter=blank_to_none)
    required: bool = False
    params: Mapping[str, Any] | None = None


@frozen(kw_only=True)
class AgentCapabilities:
    """Optional features the agent supports (spec §4.4.3)."""

    streaming: bool | None = None
    push_notifications: bool | None = None
    extensions: tuple[AgentExtension, ...] = ()
    extended_agent_card: bool | None = None


@frozen(kw_only=True)
class AgentSkill:
    """One capability the agent offers (spec §4.4.5)."""

    id: str
    name: str
    description: str
    tags: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    input_modes: tuple[str, ...] = ()
    output_modes: tuple[str, ...] = ()
    security_requirements: tuple[Mapping[str, Any], ...] = ()


@frozen(kw_only=True)
class AgentCardSignature:
    """A JWS signature over the card (spec §8.4; RFC 7515 JSON serialization).

    ``protected`` is the base64url protected header, ``signature`` the
    base64url signature, ``header`` the unprotected header.
    """

    protected: str
    signature: str
    header: Mapping[str, Any] | None = None


@frozen(kw_only=True)
class AgentCard:
    """An agent's self-description (spec §4.4.1): identity, interfaces, skills, signatures.

    ``supported_interfaces`` is in preference order.
    """

    name: str
    description: str
    supported_interfaces: tuple[AgentInterface, ...]
    version: str
    capabilities: AgentCapabilities
    default_input_modes: tuple[str, ...] = ()
    default_output_modes: tuple[str, ...] = ()
    skills: tuple[AgentSkill, ...] = ()
    provider: AgentProvider | None = None
    documentation_url: str | None = None
    security_schemes: Mapping[str, Any] | None = field(default=None, converter=empty_to_none)
    security_requirements: tuple[Mapping[str, Any], ...] = ()
    signatures: tuple[AgentCardSignature, ...] = ()
    icon_url: str | None = None
