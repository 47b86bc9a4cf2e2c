"""Building this agent's signed A2A card from its identity, bindings and addresses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sealwire.binding import Binding, Shape
from sealwire.codec import A2A_VERSION
from sealwire.identity import Identity, build_identity_extension, sign_card

__all__ = ["build_card", "interfaces_for"]


def interfaces_for(
    cls: type[Binding],
    listen_urls: Sequence[str],
    relay_address: str | None,
    options: Mapping[str, Any],
) -> list[str]:
    """The URLs at which this agent serves binding ``cls`` (none: it is not offered)."""
    if "url" in options:
        return [str(options["url"])]
    info = cls.info
    if info.shape is Shape.SESSION:
        return [url for url in listen_urls if url.split("://", 1)[0] in info.schemes]
    if info.shape in (Shape.MAILBOX, Shape.GROUP) and relay_address:
        return [relay_address]
    return []


def build_card(
    identity: Identity,
    *,
    name: str,
    description: str,
    version: str,
    bindings: Sequence[type[Binding]],
    listen_urls: Sequence[str],
    relay_address: str | None,
    options: Mapping[str, Mapping[str, Any]],
    skills: Sequence[Mapping[str, Any]] = (),
    base: Mapping[str, Any] | None = None,
    push_notifications: bool | None = None,
) -> dict[str, Any]:
    """The signed card: one ``supportedInterfaces`` entry per binding and address,
    in preference order, and the identity extension with each binding's parameters.

    With ``base`` (another agent's card), its name, description, skills and
    other fields are kept, and only the interfaces, capabilities and
    signature are Sealwire's. ``push_notifications`` is the card's
    ``capabilities.pushNotifications`` (None: not stated, or the base card's)."""
    interfaces: list[dict[str, Any]] = []
    params: dict[str, Mapping[str, Any]] = {}
    for cls in bindings:
        binding_options = options.get(cls.info.name, {})
        urls = interfaces_for(cls, listen_urls, relay_address, binding_options)
        if not urls:
            continue
        params[cls.info.uri] = cls.card_parameters(identity.public, binding_options)
        interfaces += [
            {"url": url, "protocolBinding": cls.info.uri, "protocolVersion": A2A_VERSION}
            for url in urls
        ]
    card: dict[str, Any] = {
        "name": name,
        "description": description,
        "version": version,
        "supportedInterfaces": interfaces,
        "capabilities": {
            "streaming": True,
            "extensions": [build_identity_extension(identity.public, params)],
        },
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain", "application/json"],
        # A2A requires at least one skill; an agent that names none offers itself.
        "skills": [dict(s) for s in skills]
        or [{"id": "agent", "name": name, "description": description, "tags": ["sealwire"]}],
    }
    if push_notifications is not None:
        card["capabilities"]["pushNotifications"] = push_notifications
    if base is not None:  # an existing agent's own card (the sidecar): keep what it says
        kept = {k: v for k, v in base.items() if k not in _SEALWIRE_FIELDS}
        capabilities = {**base.get("capabilities", {}), **card["capabilities"]}
        extensions = [
            e
            for e in base.get("capabilities", {}).get("extensions", [])
            if e.get("uri") != card["capabilities"]["extensions"][0]["uri"]
        ]
        capabilities["extensions"] = [*card["capabilities"]["extensions"], *extensions]
        card = {**card, **kept, "capabilities": capabilities}
    return sign_card(card, identity)


_SEALWIRE_FIELDS = frozenset({"supportedInterfaces", "capabilities", "signatures", "version"})
"""What the signed card always states itself when it is built on another card."""
