"""The signed agent card: the identity extension, signing, and verification.

The card (A2A v1.0 §4.4 AgentCard) carries, in one ``capabilities.extensions``
entry with URI :data:`IDENTITY_EXTENSION_URI`, the agent's public keys and the
parameters of each Sealwire binding it offers; each binding is one
``supportedInterfaces`` entry whose ``protocolBinding`` is a binding URI
``urn:sealwire:binding:<name>:<major>``, in preference order (§8.3.1).

It is signed as A2A v1.0 §8.4 says: a detached JWS (RFC 7515, ``alg`` EdDSA,
``kid`` = the agent id) over the RFC 8785 form of the card without its
``signatures`` (see ``_canonical``). Only :func:`verify_card` returns the
trusted :class:`VerifiedCard`.

Hybrid signatures: the card of an agent with an ML-DSA-65 key carries a second
signature entry, ``alg`` ``ML-DSA-65`` (the JOSE registration of FIPS 204),
same ``kid``, over the same canonical bytes. A verifier that knows only EdDSA
(a2a-sdk) skips it; :func:`verify_card` requires both whenever the card lists
an ML-DSA-65 key: a card whose ML-DSA signature is missing or fails is refused
even if its EdDSA one verifies, so removing the post-quantum signature is not
a way to pass a card off with a key a quantum attacker could forge for.
"""

from __future__ import annotations

import functools
import json
import re
import types
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from attrs import field, frozen

from sealwire.errors import AuthenticationError, ConfigurationError, DecodeError, LocalProtocolError
from sealwire.identity._canonical import canonical_card_bytes, plain_json
from sealwire.identity._jws import (
    JWS_ALG,
    JWS_ALG_MLDSA65,
    encode_protected_header,
    parse_protected_header,
    sign_detached,
    verify_detached,
)
from sealwire.identity._keys import Identity, PublicIdentity

__all__ = [
    "BINDING_URI_PREFIX",
    "IDENTITY_EXTENSION_URI",
    "MAX_CARD_SIGNATURES",
    "MAX_SUPPORTED_INTERFACES",
    "OfferedBinding",
    "VerifiedCard",
    "binding_uri",
    "build_identity_extension",
    "find_identity_extension",
    "parse_binding_uri",
    "sign_card",
    "verify_card",
]

IDENTITY_EXTENSION_URI = "urn:sealwire:ext:identity:1"
BINDING_URI_PREFIX = "urn:sealwire:binding:"

# Each signature entry may cost an Ed25519 (~100 us) or ML-DSA-65 (~250 us)
# verification; a hostile card must not buy unbounded work. A hybrid-signed card
# has two entries, key rotation two or three more.
MAX_CARD_SIGNATURES = 16
# Bounds the offers built from one card; a card lists a handful of interfaces.
MAX_SUPPORTED_INTERFACES = 64

_PARAMS_PATH = "capabilities.extensions.params"
_BINDING_NAME_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")
_MAJOR_RE = re.compile(r"0|[1-9][0-9]{0,5}")
_EXTENSION_DESCRIPTION = (
    "Sealwire end-to-end security: the agent's public keys and the parameters "
    "of each Sealwire binding it offers."
)


def binding_uri(name: str, major: int) -> str:
    """``urn:sealwire:binding:<name>:<major>``, the ``protocolBinding`` of a Sealwire binding."""
    uri = f"{BINDING_URI_PREFIX}{name}:{major}"
    if parse_binding_uri(uri) is None:
        raise ConfigurationError(f"invalid binding name {name!r} or major version {major!r}")
    return uri


def parse_binding_uri(uri: object) -> tuple[str, int] | None:
    """``(name, major)`` of a well-formed binding URI, None for anything else."""
    if not isinstance(uri, str) or not uri.startswith(BINDING_URI_PREFIX):
        return None
    name, _, major = uri[len(BINDING_URI_PREFIX) :].partition(":")
    if _BINDING_NAME_RE.fullmatch(name) is None or _MAJOR_RE.fullmatch(major) is None:
        return None
    return name, int(major)


@frozen(kw_only=True)
class OfferedBinding:
    """One Sealwire binding a verified card offers.

    ``uri``/``name``/``major`` name it, ``url`` says where (its
    ``supportedInterfaces`` entry), ``params`` are the binding's parameters from
    the identity extension (empty when the card gives none).
    """

    uri: str
    name: str
    major: int
    url: str
    params: Mapping[str, Any] = field(factory=lambda: types.MappingProxyType({}))


def build_identity_extension(
    identity: PublicIdentity,
    binding_params: Mapping[str, Mapping[str, Any]],
    *,
    required: bool = True,
) -> dict[str, Any]:
    """The ``capabilities.extensions`` entry carrying the keys and per-binding params.

    ``binding_params`` maps binding URIs (:func:`binding_uri`) to their JSON
    parameters. ``required`` says the agent refuses plaintext A2A.
    """
    bindings: dict[str, Any] = {}
    for uri, params in binding_params.items():
        if parse_binding_uri(uri) is None:
            raise ConfigurationError(f"{uri!r} is not a Sealwire binding URI")
        bindings[uri] = plain_json(params, path=f"bindings.{uri}")
    params_json: dict[str, Any] = {**identity.to_json(), "bindings": bindings}
    return {
        "uri": IDENTITY_EXTENSION_URI,
        "required": required,
        "description": _EXTENSION_DESCRIPTION,
        "params": params_json,
    }


def find_identity_extension(card: Mapping[str, Any]) -> Mapping[str, Any]:
    """The identity extension's ``params``; DecodeError naming the field if missing or malformed.

    The card is not verified by this call.
    """
    if not isinstance(card, Mapping):
        raise DecodeError("expected a JSON object", field="card")
    capabilities = card.get("capabilities")
    if not isinstance(capabilities, Mapping):
        raise DecodeError("missing", field="capabilities")
    extensions = capabilities.get("extensions")
    if not isinstance(extensions, list | tuple):
        raise DecodeError(
            "missing the Sealwire identity extension", field="capabilities.extensions"
        )
    found = [
        (i, ext)
        for i, ext in enumerate(extensions)
        if isinstance(ext, Mapping) and ext.get("uri") == IDENTITY_EXTENSION_URI
    ]
    if not found:
        raise DecodeError(
            "missing the Sealwire identity extension", field="capabilities.extensions"
        )
    if len(found) > 1:
        raise DecodeError("more than one identity extension", field="capabilities.extensions")
    index, extension = found[0]
    params = extension.get("params")
    if not isinstance(params, Mapping):
        raise DecodeError("missing", field=f"capabilities.extensions[{index}].params")
    return params


def _signature_kid(entry: object) -> str | None:
    if not isinstance(entry, Mapping):
        return None
    try:
        kid = parse_protected_header(entry.get("protected")).get("kid")
    except DecodeError:
        return None
    return kid if isinstance(kid, str) else None


def sign_card(card: Mapping[str, Any], identity: Identity) -> dict[str, Any]:
    """The card with a signature by ``identity`` added (A2A v1.0 §8.4.2).

    Any previous signature whose ``kid`` is this agent id is replaced; others
    are kept. An identity with an ML-DSA-65 key adds a second entry (``alg``
    ``ML-DSA-65``, same ``kid``) over the same canonical card, after the EdDSA
    one. The card must carry this identity's extension
    (:func:`build_identity_extension`), else LocalProtocolError.
    """
    try:
        claimed = PublicIdentity.from_json(find_identity_extension(card), path=_PARAMS_PATH)
    except (DecodeError, AuthenticationError) as exc:
        raise LocalProtocolError(f"card has no valid Sealwire identity extension: {exc}") from exc
    if claimed != identity.public:
        raise LocalProtocolError("card's identity extension names other keys than this identity")
    signed: dict[str, Any] = plain_json(card)
    payload = canonical_card_bytes(signed)
    protected = encode_protected_header(identity.agent_id)
    signature = sign_detached(identity.signing_key, protected, payload)
    entries = [{"protected": protected, "signature": signature}]
    if identity.mldsa_key is not None:
        protected = encode_protected_header(identity.agent_id, JWS_ALG_MLDSA65)
        signature = sign_detached(identity.mldsa_key, protected, payload)
        entries.append({"protected": protected, "signature": signature})
    previous = signed.get("signatures")
    kept = [
        entry
        for entry in (previous if isinstance(previous, list) else [])
        if _signature_kid(entry) != identity.agent_id
    ]
    signed["signatures"] = [*kept, *entries]
    return signed


@frozen(kw_only=True)
class VerifiedCard:
    """A card whose signature by its own identity key verified; made by :func:`verify_card`.

    ``card`` is the card JSON (a private copy), ``identity`` its keys, ``offers``
    the Sealwire bindings of ``supportedInterfaces`` in preference order,
    ``name`` the agent's name, ``url`` the preferred interface's URL.
    """

    card: Mapping[str, Any] = field(repr=False)
    identity: PublicIdentity
    offers: tuple[OfferedBinding, ...]
    name: str
    url: str | None

    @property
    def agent_id(self) -> str:
        """The verified agent id."""
        return self.identity.agent_id

    @functools.cached_property
    def json_bytes(self) -> bytes:
        """The card as compact JSON (UTF-8), encoded once: records that carry the card
        (kept frames, answers, session records) embed these bytes."""
        return json.dumps(dict(self.card), separators=(",", ":")).encode()

    @property
    def hybrid_signed(self) -> bool:
        """Whether the card's signatures include a verified ML-DSA-65 one (every card
        that lists an ML-DSA-65 key: :func:`verify_card` requires it)."""
        return self.identity.mldsa_key is not None

    def offer(self, name: str) -> OfferedBinding | None:
        """The most preferred offer of the binding called ``name``, or None."""
        return next((o for o in self.offers if o.name == name), None)


def _verify_signatures(card: Mapping[str, Any], identity: PublicIdentity) -> None:
    """An EdDSA signature by the agent must verify; so must an ML-DSA-65 one when the
    card lists an ML-DSA-65 key (hybrid: neither alone is enough)."""
    entries = card.get("signatures")
    if not isinstance(entries, list) or not entries:
        raise AuthenticationError("agent card signature invalid: the card is not signed")
    if len(entries) > MAX_CARD_SIGNATURES:
        raise DecodeError(f"more than {MAX_CARD_SIGNATURES} signatures", field="signatures")
    payload = canonical_card_bytes(card)
    keys: dict[str, Any] = {JWS_ALG: identity.signing_key}
    if identity.mldsa_key is not None:
        keys[JWS_ALG_MLDSA65] = identity.mldsa_key
    valid: set[str] = set()
    offered: set[str] = set()
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        protected = entry.get("protected")
        try:
            header = parse_protected_header(protected)
        except DecodeError:
            continue
        # Only our own schemes count; "none", other algs, other kids and any
        # critical extension (RFC 7515 §4.1.11) are not ours to accept.
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in keys or alg in valid:
            continue
        if header.get("kid") != identity.agent_id or "crit" in header:
            continue
        offered.add(alg)
        assert isinstance(protected, str)  # parse_protected_header checked it
        if verify_detached(keys[alg], protected, payload, entry.get("signature")):
            valid.add(alg)
    if JWS_ALG not in valid:
        raise AuthenticationError(
            f"agent card signature invalid: no valid EdDSA signature by {identity.agent_id}"
        )
    if JWS_ALG_MLDSA65 in keys and JWS_ALG_MLDSA65 not in valid:
        why = "does not verify" if JWS_ALG_MLDSA65 in offered else "is missing"
        raise AuthenticationError(
            "agent card signature invalid: the card lists an ML-DSA-65 key and its "
            f"ML-DSA-65 signature by {identity.agent_id} {why}"
        )


def _offers(card: Mapping[str, Any], params: Mapping[str, Any]) -> tuple[OfferedBinding, ...]:
    interfaces = card.get("supportedInterfaces", [])
    if not isinstance(interfaces, list):
        raise DecodeError("expected a list", field="supportedInterfaces")
    if len(interfaces) > MAX_SUPPORTED_INTERFACES:
        raise DecodeError(f"more than {MAX_SUPPORTED_INTERFACES}", field="supportedInterfaces")
    bindings = params.get("bindings", {})
    if not isinstance(bindings, Mapping):
        raise DecodeError("expected an object", field=f"{_PARAMS_PATH}.bindings")
    offers = []
    for i, interface in enumerate(interfaces):
        path = f"supportedInterfaces[{i}]"
        if not isinstance(interface, Mapping):
            raise DecodeError("expected an object", field=path)
        uri = interface.get("protocolBinding")
        if not isinstance(uri, str) or not uri.startswith(BINDING_URI_PREFIX):
            continue  # JSONRPC, GRPC, ...: not ours
        parsed = parse_binding_uri(uri)
        if parsed is None:
            raise DecodeError("malformed Sealwire binding URI", field=f"{path}.protocolBinding")
        url = interface.get("url")
        if not isinstance(url, str) or not url:
            raise DecodeError("missing", field=f"{path}.url")
        _check_offer_url(url, f"{path}.url")
        binding_params = bindings.get(uri, {})
        if not isinstance(binding_params, Mapping):
            raise DecodeError("expected an object", field=f"{_PARAMS_PATH}.bindings.{uri}")
        offers.append(
            OfferedBinding(
                uri=uri,
                name=parsed[0],
                major=parsed[1],
                url=url,
                params=types.MappingProxyType(dict(binding_params)),
            )
        )
    return tuple(offers)


# What a URL may not hold anywhere (RFC 3986 §2: whitespace and controls are never
# URL characters); a host with one would reach the resolver as it is.
_NOT_IN_URLS = re.compile(r"[\x00-\x20\x7f]")


def _check_offer_url(url: str, path: str) -> None:
    """A binding offer's URL (what this agent may dial): no whitespace or control
    character; one with an authority (``//``) parses, names a host and a port in range.
    An address without one is kept (a mailbox offer may name a bare agent id).
    DecodeError otherwise."""
    if _NOT_IN_URLS.search(url):
        raise DecodeError("a URL holds no whitespace or control character", field=path)
    if "//" not in url:
        return
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing it checks its range
    except ValueError:
        raise DecodeError("malformed URL", field=path) from None
    if not parts.hostname:
        raise DecodeError("a URL with no host", field=path)


def _preferred_url(card: Mapping[str, Any]) -> str | None:
    interfaces = card.get("supportedInterfaces")
    if isinstance(interfaces, list) and interfaces and isinstance(interfaces[0], Mapping):
        url = interfaces[0].get("url")
        return url if isinstance(url, str) else None
    return None


def verify_card(card: Mapping[str, Any]) -> VerifiedCard:
    """Verify a card's own signature and return the trusted view of it.

    1. find the identity extension (DecodeError naming the field if missing or
       malformed; TrustError if its agent id does not match its signing key);
    2. verify a JWS over the card's canonical form by that key, with
       ``kid`` = the agent id, and, when the card lists an ML-DSA-65 key, an
       ``ML-DSA-65`` JWS by that key too (AuthenticationError "agent card
       signature invalid" if either is missing or fails);
    3. build the offers. Whether the agent is trusted is the TrustStore's call.
    """
    copy: dict[str, Any] = plain_json(card)
    params = find_identity_extension(copy)
    identity = PublicIdentity.from_json(params, path=_PARAMS_PATH)
    _verify_signatures(copy, identity)
    name = copy.get("name")
    if not isinstance(name, str):
        raise DecodeError("missing", field="name")
    return VerifiedCard(
        card=copy,
        identity=identity,
        offers=_offers(copy, params),
        name=name,
        url=_preferred_url(copy),
    )
