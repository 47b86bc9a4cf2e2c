"""The bytes an agent card signature covers (A2A v1.0 §8.4.1).

    payload = JCS(clean(drop_defaults(card without "signatures")))      # RFC 8785

A2A v1.0 §8.4.1 asks for the proto3 JSON form of the card (fields without
presence omitted at their default) before JCS. We compute exactly what
a2a-sdk 1.3's verifier computes (``a2a.utils.signing``: ``MessageToDict`` of the
parsed card, then removal of empty strings, lists, objects and nulls at every
depth, ``params`` included), so that our signatures verify there and theirs
here:

* the only non-string scalars without presence in an AgentCard are
  ``capabilities.extensions[].required`` and the OAuth authorization-code
  flow's ``pkceRequired``; ``false`` is their default and is dropped;
* empty strings, lists and objects and nulls are dropped everywhere.

Deviation from the letter of §8.4.1, inherited from a2a-sdk: an empty REQUIRED
``description`` or ``skills`` is dropped too, not kept. Fields that are not in
the v1.0 schema are covered by our signature but discarded by a2a-sdk's parser,
so sign only v1.0 cards (for example ``sealwire.codec.to_json`` of an AgentCard).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import rfc8785

from sealwire.errors import DecodeError

__all__ = ["MAX_CARD_DEPTH", "canonical_card_bytes", "plain_json"]

# Nesting is attacker-controlled through extension params; a bound keeps the
# recursive walks below far from the interpreter's stack limit. Real cards nest < 10.
MAX_CARD_DEPTH = 64

_SCALARS = (str, int, float, bool, type(None))


def plain_json(value: object, *, path: str = "card", depth: int = 1) -> Any:
    """A deep copy of JSON-like data as dicts and lists; DecodeError naming the path otherwise."""
    if isinstance(value, _SCALARS):
        return value
    if depth > MAX_CARD_DEPTH:
        raise DecodeError(f"nested deeper than {MAX_CARD_DEPTH}", field=path)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise DecodeError("object key is not a string", field=path)
            out[key] = plain_json(item, path=f"{path}.{key}", depth=depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [
            plain_json(item, path=f"{path}[{i}]", depth=depth + 1) for i, item in enumerate(value)
        ]
    raise DecodeError(f"{type(value).__name__} is not a JSON value", field=path)


def _drop_proto_defaults(card: dict[str, Any]) -> None:
    capabilities = card.get("capabilities")
    if isinstance(capabilities, dict):
        for extension in _dicts(capabilities.get("extensions")):
            if extension.get("required") is False:
                del extension["required"]
    schemes = card.get("securitySchemes")
    if isinstance(schemes, dict):
        for scheme in schemes.values():
            oauth2 = scheme.get("oauth2SecurityScheme") if isinstance(scheme, dict) else None
            flows = oauth2.get("flows") if isinstance(oauth2, dict) else None
            flow = flows.get("authorizationCode") if isinstance(flows, dict) else None
            if isinstance(flow, dict) and flow.get("pkceRequired") is False:
                del flow["pkceRequired"]


def _dicts(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _clean_empty(value: Any) -> Any:
    """None for "", [], {}, null (after cleaning their children), else the cleaned value."""
    if isinstance(value, dict):
        cleaned = {k: c for k, v in value.items() if (c := _clean_empty(v)) is not None}
        return cleaned or None
    if isinstance(value, list):
        items = [c for v in value if (c := _clean_empty(v)) is not None]
        return items or None
    if value == "":
        return None
    return value


def canonical_card_bytes(card: Mapping[str, Any]) -> bytes:
    """The RFC 8785 bytes a card signature covers (see the module docstring).

    Independent of key order and of ``signatures``. DecodeError when the card
    has no canonical form (non-JSON values, NaN, integers beyond 2**53, too deep).
    """
    if not isinstance(card, Mapping):
        raise DecodeError("expected a JSON object", field="card")
    body = plain_json({k: v for k, v in card.items() if k != "signatures"})
    _drop_proto_defaults(body)
    try:
        return rfc8785.dumps(_clean_empty(body) or {})
    except (rfc8785.CanonicalizationError, ValueError) as exc:
        raise DecodeError("card has no RFC 8785 canonical form", field="card") from exc
