"""The agent card and its parts (A2A v1.0 spec §4.4, §4.5, §8).

The security schemes are typed as the proto defines them (OpenAPI-like), so a
card re-encodes exactly as a2a-sdk encodes it: its signature (spec §8.4) is
over that encoding. Sealwire itself authenticates peers by its bindings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from attrs import field, frozen

from sealwire.model._message import _check_one_of, blank_to_none

__all__ = [
    "APIKeySecurityScheme",
    "AgentCapabilities",
    "AgentCard",
    "AgentCardSignature",
    "AgentExtension",
    "AgentInterface",
    "AgentProvider",
    "AgentSkill",
    "AuthorizationCodeOAuthFlow",
    "ClientCredentialsOAuthFlow",
    "DeviceCodeOAuthFlow",
    "HTTPAuthSecurityScheme",
    "ImplicitOAuthFlow",
    "MutualTlsSecurityScheme",
    "OAuth2SecurityScheme",
    "OAuthFlows",
    "OpenIdConnectSecurityScheme",
    "PasswordOAuthFlow",
    "SecurityRequirement",
    "SecurityScheme",
    "StringList",
]


def _no_scopes() -> Mapping[str, str]:
    return {}


@frozen
class StringList:
    """A list of strings as a message (proto ``StringList``): ``{"list": [...]}``."""

    list: tuple[str, ...] = ()


@frozen
class SecurityRequirement:
    """Scheme names mapped to the scopes required (spec §4.5); one entry must hold."""

    schemes: Mapping[str, StringList] = field(factory=dict)


@frozen(kw_only=True)
class APIKeySecurityScheme:
    """An API key in a header, query parameter or cookie (spec §4.5)."""

    location: str
    name: str
    description: str | None = field(default=None, converter=blank_to_none)


@frozen(kw_only=True)
class HTTPAuthSecurityScheme:
    """HTTP authentication, e.g. ``Bearer`` (spec §4.5)."""

    scheme: str
    bearer_format: str | None = field(default=None, converter=blank_to_none)
    description: str | None = field(default=None, converter=blank_to_none)


@frozen(kw_only=True)
class AuthorizationCodeOAuthFlow:
    """OAuth 2.0 authorization code flow (spec §4.5)."""

    authorization_url: str
    token_url: str
    scopes: Mapping[str, str] = field(factory=_no_scopes)
    refresh_url: str | None = field(default=None, converter=blank_to_none)
    pkce_required: bool = False


@frozen(kw_only=True)
class ClientCredentialsOAuthFlow:
    """OAuth 2.0 client credentials flow (spec §4.5)."""

    token_url: str
    scopes: Mapping[str, str] = field(factory=_no_scopes)
    refresh_url: str | None = field(default=None, converter=blank_to_none)


@frozen(kw_only=True)
class ImplicitOAuthFlow:
    """OAuth 2.0 implicit flow (deprecated in OAuth 2.1; spec §4.5)."""

    authorization_url: str | None = field(default=None, converter=blank_to_none)
    refresh_url: str | None = field(default=None, converter=blank_to_none)
    scopes: Mapping[str, str] = field(factory=_no_scopes)


@frozen(kw_only=True)
class PasswordOAuthFlow:
    """OAuth 2.0 password flow (deprecated in OAuth 2.1; spec §4.5)."""

    token_url: str | None = field(default=None, converter=blank_to_none)
    refresh_url: str | None = field(default=None, converter=blank_to_none)
    scopes: Mapping[str, str] = field(factory=_no_scopes)


@frozen(kw_only=True)
class DeviceCodeOAuthFlow:
    """OAuth 2.0 device authorization flow, RFC 8628 (spec §4.5)."""

    device_authorization_url: str
    token_url: str
    scopes: Mapping[str, str] = field(factory=_no_scopes)
    refresh_url: str | None = field(default=None, converter=blank_to_none)


@frozen(kw_only=True)
class OAuthFlows:
    """Exactly one OAuth 2.0 flow (spec §4.5)."""

    ONEOF: ClassVar[tuple[str, ...]] = (
        "authorization_code",
        "client_credentials",
        "implicit",
        "password",
        "device_code",
    )

    authorization_code: AuthorizationCodeOAuthFlow | None = None
    client_credentials: ClientCredentialsOAuthFlow | None = None
    implicit: ImplicitOAuthFlow | None = None
    password: PasswordOAuthFlow | None = None
    device_code: DeviceCodeOAuthFlow | None = None

    def __attrs_post_init__(self) -> None:
        _check_one_of(self, self.ONEOF)


@frozen(kw_only=True)
class OAuth2SecurityScheme:
    """OAuth 2.0 (spec §4.5)."""

    flows: OAuthFlows
    oauth2_metadata_url: str | None = field(default=None, converter=blank_to_none)
    description: str | None = field(default=None, converter=blank_to_none)


@frozen(kw_only=True)
class OpenIdConnectSecurityScheme:
    """OpenID Connect discovery (spec §4.5)."""

    open_id_connect_url: str
    description: str | None = field(default=None, converter=blank_to_none)


@frozen(kw_only=True)
class MutualTlsSecurityScheme:
    """Mutual TLS (spec §4.5)."""

    description: str | None = field(default=None, converter=blank_to_none)


@frozen(kw_only=True)
class SecurityScheme:
    """Exactly one way to authenticate to the agent (spec §4.5)."""

    ONEOF: ClassVar[tuple[str, ...]] = (
        "api_key_security_scheme",
        "http_auth_security_scheme",
        "oauth2_security_scheme",
        "open_id_connect_security_scheme",
        "mtls_security_scheme",
    )

    api_key_security_scheme: APIKeySecurityScheme | None = None
    http_auth_security_scheme: HTTPAuthSecurityScheme | None = None
    oauth2_security_scheme: OAuth2SecurityScheme | None = None
    open_id_connect_security_scheme: OpenIdConnectSecurityScheme | None = None
    mtls_security_scheme: MutualTlsSecurityScheme | None = None

    def __attrs_post_init__(self) -> None:
        _check_one_of(self, self.ONEOF)


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
    security_requirements: tuple[SecurityRequirement, ...] = ()


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
    security_schemes: Mapping[str, SecurityScheme] = field(factory=dict)
    security_requirements: tuple[SecurityRequirement, ...] = ()
    signatures: tuple[AgentCardSignature, ...] = ()
    icon_url: str | None = None
