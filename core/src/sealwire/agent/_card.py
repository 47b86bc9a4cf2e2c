"""Building this agent's signed A2A card from its identity, bindings and addresses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sealwire.binding import Binding, Property, Shape
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
    if info.shape is Shape.SESSION and Property.HTTP_INTEROP not in info.properties:
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
) -> dict[str, Any]:
    """The signed card: one ``supportedInterfaces`` entry per binding and address,
    in preference order, and the identity extension with each binding's parameters."""
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
    card = {
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
        "skills": [dict(s) for s in skills],
    }
    return sign_card(card, identity)
