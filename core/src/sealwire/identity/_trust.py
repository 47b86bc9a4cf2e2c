"""Which peers an agent trusts: pinned keys, an allow-list, or trust on first use.

Persisted in a StateStore, namespace ``trust``; keys and values::

    pin/<agent id>    -> UTF-8 JSON {"v": 1, "identity": PublicIdentity.to_json()}
    allow/<agent id>  -> b"1"
    deny/<agent id>   -> b"1"

Rules, in order, for :meth:`TrustStore.check`:

1. a denied agent id is refused, in every mode;
2. a pinned agent must present exactly its pinned keys, in every mode;
3. PINNED: an agent without a pin is refused;
   ALLOWLIST: an agent id not allowed is refused;
   TOFU: an agent without a pin is pinned now (first use).
"""

from __future__ import annotations

import contextlib
import enum
import hmac
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

import attrs

from sealwire.errors import DecodeError, TrustError
from sealwire.identity._card import VerifiedCard
from sealwire.identity._keys import PublicIdentity, is_agent_id

__all__ = [
    "MAX_CHECKED_IDENTITIES",
    "TRUST_NAMESPACE",
    "TrustListing",
    "TrustMode",
    "TrustStore",
]

TRUST_NAMESPACE = "trust"
_PIN_FORMAT_VERSION = 1

# Identities that passed check() in this process, for check_key() in ALLOWLIST
# mode where nothing is pinned. Bounded (least recently used evicted) so that a
# stream of distinct cards cannot grow memory; a peer evicted is checked again.
MAX_CHECKED_IDENTITIES = 4096


class TrustMode(enum.Enum):
    """How unknown peers are treated (see the module docstring)."""

    PINNED = "pinned"
    ALLOWLIST = "allowlist"
    TOFU = "tofu"


@attrs.frozen(kw_only=True)
class TrustListing:
    """What a trust store holds (for ``sealwire trust list``): the pinned identities,
    the allowed and the denied agent ids, each sorted by agent id."""

    mode: TrustMode
    pinned: tuple[PublicIdentity, ...]
    allowed: tuple[str, ...]
    denied: tuple[str, ...]


class _KeyValue(Protocol):
    def get(self, namespace: str, key: str) -> bytes | None: ...
    def put(self, namespace: str, key: str, value: bytes) -> None: ...
    def delete(self, namespace: str, key: str) -> bool: ...
    def keys(self, namespace: str, prefix: str = "") -> list[str]: ...


class TrustStore:
    """Pins, allow and deny lists over a StateStore (``sealwire.store``).

    Any object with ``get/put/delete/keys(namespace, ...)`` works; when it also
    has ``transaction()``, first-use pinning runs inside one.
    """

    def __init__(self, store: _KeyValue, mode: TrustMode) -> None:
        self._store = store
        self.mode = mode
        self._lock = threading.Lock()
        self._checked: OrderedDict[str, PublicIdentity] = OrderedDict()
        # Stored pin records already parsed (a pin is read at every message of a
        # peer); keyed by the record's bytes, so a changed pin is parsed afresh.
        self._parsed_pins: OrderedDict[tuple[str, bytes], PublicIdentity] = OrderedDict()
        self._parsed_pins_lock = threading.Lock()  # not _lock: taken while _lock is held

    def __repr__(self) -> str:
        return f"TrustStore(mode={self.mode.name})"

    @contextlib.contextmanager
    def _atomic(self) -> Iterator[_KeyValue]:
        transaction: Callable[[], AbstractContextManager[_KeyValue]] | None = getattr(
            self._store, "transaction", None
        )
        with self._lock:
            if transaction is None:
                yield self._store
            else:
                with transaction() as tx:
                    yield tx

    def check(self, card: VerifiedCard) -> None:
        """Accept the card's agent, or raise TrustError saying why (module docstring rules)."""
        identity = card.identity
        # Reads alone decide, except on a first use under TOFU: then the decision is
        # taken again, and the pin written, in one transaction.
        if self._judge(self._store, identity):
            with self._atomic() as kv:
                if self._judge(kv, identity):
                    _store_pin(kv, identity)
        self._remember(identity)

    def _judge(self, kv: _KeyValue, identity: PublicIdentity) -> bool:
        """Raise TrustError if ``identity`` is refused; True if TOFU must pin it now."""
        agent_id = identity.agent_id
        if kv.get(TRUST_NAMESPACE, f"deny/{agent_id}") is not None:
            raise TrustError(f"agent {agent_id} is denied")
        pinned = self._load_pin(kv, agent_id)
        if pinned is not None and pinned != identity:
            raise TrustError(
                f"agent {agent_id} presented keys that differ from its pinned keys "
                f"({_differences(pinned, identity)}); forget() it to accept new keys"
            )
        if pinned is None and self.mode is TrustMode.PINNED:
            raise TrustError(f"agent {agent_id} is not pinned (trust mode PINNED)")
        if (
            self.mode is TrustMode.ALLOWLIST
            and kv.get(TRUST_NAMESPACE, f"allow/{agent_id}") is None
        ):
            raise TrustError(f"agent {agent_id} is not on the allow-list")
        return pinned is None and self.mode is TrustMode.TOFU

    def _remember(self, identity: PublicIdentity) -> None:
        with self._lock:
            self._checked[identity.agent_id] = identity
            self._checked.move_to_end(identity.agent_id)
            while len(self._checked) > MAX_CHECKED_IDENTITIES:
                self._checked.popitem(last=False)

    def _load_pin(self, kv: _KeyValue, agent_id: str) -> PublicIdentity | None:
        raw = kv.get(TRUST_NAMESPACE, f"pin/{agent_id}")
        if raw is None:
            return None
        key = (agent_id, bytes(raw))
        with self._parsed_pins_lock:
            identity = self._parsed_pins.get(key)
        if identity is None:
            identity = _parse_pin(raw, agent_id)
            with self._parsed_pins_lock:
                self._parsed_pins[key] = identity
                while len(self._parsed_pins) > MAX_CHECKED_IDENTITIES:
                    self._parsed_pins.popitem(last=False)
        return identity

    def pin(self, identity: PublicIdentity) -> None:
        """Pin these keys for their agent id (replacing any previous pin)."""
        with self._atomic() as kv:
            _store_pin(kv, identity)

    def allow(self, agent_id: str) -> None:
        """Put ``agent_id`` on the allow-list."""
        self._store.put(TRUST_NAMESPACE, f"allow/{_checked_id(agent_id)}", b"1")

    def deny(self, agent_id: str) -> None:
        """Refuse ``agent_id`` from now on, whatever the mode, pins and allow-list say."""
        agent_id = _checked_id(agent_id)
        self._store.put(TRUST_NAMESPACE, f"deny/{agent_id}", b"1")
        with self._lock:
            self._checked.pop(agent_id, None)

    def forget(self, agent_id: str) -> None:
        """Drop everything known of ``agent_id``: pin, allow and deny entries."""
        agent_id = _checked_id(agent_id)
        with self._atomic() as kv:
            for kind in ("pin", "allow", "deny"):
                kv.delete(TRUST_NAMESPACE, f"{kind}/{agent_id}")
        with self._lock:
            self._checked.pop(agent_id, None)

    def pinned(self, agent_id: str) -> PublicIdentity | None:
        """The keys pinned for ``agent_id``, or None."""
        return self._load_pin(self._store, _checked_id(agent_id))

    def listing(self) -> TrustListing:
        """Every pin, allow and deny entry, read in one transaction when the store has them."""
        with self._atomic() as kv:
            pin_keys = sorted(kv.keys(TRUST_NAMESPACE, "pin/"))
            pinned = [self._load_pin(kv, key.removeprefix("pin/")) for key in pin_keys]
            allowed = sorted(
                key.removeprefix("allow/") for key in kv.keys(TRUST_NAMESPACE, "allow/")
            )
            denied = sorted(key.removeprefix("deny/") for key in kv.keys(TRUST_NAMESPACE, "deny/"))
        return TrustListing(
            mode=self.mode,
            pinned=tuple(identity for identity in pinned if identity is not None),
            allowed=tuple(allowed),
            denied=tuple(denied),
        )

    def is_denied(self, agent_id: str) -> bool:
        """Whether ``agent_id`` is on the deny list."""
        return self._store.get(TRUST_NAMESPACE, f"deny/{_checked_id(agent_id)}") is not None

    def check_key(self, agent_id: str, static_x25519_public: bytes) -> None:
        """For bindings: is this static X25519 key that of ``agent_id``, already checked?

        The key is compared with the pinned keys, else with the identity that
        last passed :meth:`check`. TrustError when it differs, when the agent
        was never checked, or when it is denied.
        """
        if self.is_denied(agent_id):
            raise TrustError(f"agent {agent_id} is denied")
        known = self._load_pin(self._store, agent_id)
        if known is None:
            with self._lock:
                known = self._checked.get(agent_id)
        if known is None:
            raise TrustError(f"agent {agent_id} has not been checked")
        expected = known.agreement_key.public_bytes_raw()
        if not hmac.compare_digest(expected, bytes(static_x25519_public)):
            raise TrustError(f"static key is not the agreement key of agent {agent_id}")


def _checked_id(agent_id: str) -> str:
    if not is_agent_id(agent_id):
        raise DecodeError("not an agent id", field="agent_id")
    return agent_id


def _store_pin(kv: _KeyValue, identity: PublicIdentity) -> None:
    record = {"v": _PIN_FORMAT_VERSION, "identity": identity.to_json()}
    value = json.dumps(record, separators=(",", ":"), sort_keys=True).encode("utf-8")
    kv.put(TRUST_NAMESPACE, f"pin/{identity.agent_id}", value)


def _parse_pin(raw: bytes, agent_id: str) -> PublicIdentity:
    field = f"trust pin/{agent_id}"
    try:
        record: Any = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError("stored pin is not JSON", field=field) from exc
    if not isinstance(record, dict) or record.get("v") != _PIN_FORMAT_VERSION:
        raise DecodeError("unknown pin format", field=field)
    identity = PublicIdentity.from_json(record.get("identity"), path=field)
    if identity.agent_id != agent_id:
        raise DecodeError("pin stored under another agent id", field=field)
    return identity


def _differences(pinned: PublicIdentity, seen: PublicIdentity) -> str:
    names = ("signing key", "agreement key", "ML-DSA-65 key", "ML-KEM-768 key")
    changed = [n for n, a, b in zip(names, pinned.raw(), seen.raw(), strict=True) if a != b]
    return ", ".join(changed) + " changed"
