"""The managed store's head, as the manager holds it: the sealed manifest (every
namespace, key and value, or the names of a long value's blobs), its encoding into a
head secret and blob secrets, and the comparison of two heads for the rebase check."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping

import attrs

from sealwire.errors import AuthenticationError
from sealwire.store._base import StoreError
from sealwire.store._keys import StoreKey
from sealwire.store._sqlite import seal as seal_value
from sealwire.store._sqlite import unseal as unseal_value

__all__ = [
    "CHUNK_MAX",
    "EMPTY_HEAD",
    "HEAD_MAX",
    "INLINE_MAX",
    "Entry",
    "Head",
    "Key",
    "ManifestSeal",
    "b64",
    "blob_name",
    "changed_keys",
    "chunks_of",
    "conflicts",
    "unb64",
]

INLINE_MAX = 1024
"""Bytes of a value kept inside the manifest. A ratchet state (a few hundred bytes)
stays inline, so a ratchet step is one head write; a group state (kilobytes) is
written once as a blob instead of being rewritten with every head."""

HEAD_MAX = 60 * 1024
"""Bytes of one head or blob secret: below the 64 KiB a secret value may hold in
AWS Secrets Manager (65,536) and GCP Secret Manager (65,536), with room to spare."""

CHUNK_MAX = HEAD_MAX
"""Bytes of one blob secret (a longer sealed value is split into several)."""

MANIFEST_VERSION = 1
_HEAD_NS = "\x00sealwire-head"  # the AAD of the manifest: NUL is in no user namespace
_INLINE_HEAD = b"I"
_BLOB_HEAD = b"R"

Key = tuple[str, str]

# An entry of the manifest: the value itself (inline) or the names of its blobs.
Entry = tuple[str, bytes | tuple[str, ...]]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise StoreError("the manager's state is malformed")
    return base64.b64decode(text, validate=True)


def blob_name(content: bytes) -> str:
    """A blob secret's name: the SHA-256 of its content (blobs are content-addressed)."""
    return hashlib.sha256(content).hexdigest()


def chunks_of(sealed: bytes) -> list[bytes]:
    """``sealed`` cut into blob secrets of at most :data:`CHUNK_MAX` bytes."""
    return [sealed[i : i + CHUNK_MAX] for i in range(0, len(sealed), CHUNK_MAX)]


@attrs.frozen
class Head:
    version: str | None
    generation: int
    entries: Mapping[Key, Entry]
    values: Mapping[Key, bytes]
    content: bytes = b""
    """The head secret's content, exactly as in the manager."""
    commit: str = ""
    """The id of the commit (or flushed journal) that wrote this head."""
    manifest_blobs: tuple[str, ...] = ()

    def blobs(self) -> set[str]:
        names = set(self.manifest_blobs)
        for kind, ref in self.entries.values():
            if isinstance(ref, tuple) and kind == "r":
                names.update(ref)
        return names


EMPTY_HEAD = Head(version=None, generation=0, entries={}, values={})


@attrs.frozen
class ManifestSeal:
    """Seals a manifest into a head's content and opens it again, under the store key."""

    key: StoreKey = attrs.field(repr=False)
    label: str

    def encode(
        self, entries: Mapping[Key, Entry], generation: int, commit: str
    ) -> tuple[bytes, list[bytes]]:
        """The head content and the blobs it needs besides the values' own."""
        rows: list[list[object]] = []
        for (ns, key), (_kind, ref) in sorted(entries.items()):
            if isinstance(ref, bytes):
                rows.append([ns, key, "i", b64(ref)])
            else:
                rows.append([ns, key, "r", list(ref)])
        manifest = json.dumps(
            {"v": MANIFEST_VERSION, "g": generation, "c": commit, "e": rows},
            separators=(",", ":"),
        ).encode()
        sealed = seal_value(self.key, _HEAD_NS, self.label, manifest)
        if len(sealed) + 1 <= HEAD_MAX:
            return _INLINE_HEAD + sealed, []
        chunks = chunks_of(sealed)
        names = [blob_name(c) for c in chunks]
        return _BLOB_HEAD + json.dumps(names).encode(), chunks

    def decode(self, version: str, content: bytes, read_blob: Callable[[str], bytes]) -> Head:
        """The head ``content``; its blobs come from ``read_blob``."""
        manifest_blobs: tuple[str, ...] = ()
        if content[:1] == _BLOB_HEAD:
            manifest_blobs = tuple(str(n) for n in json.loads(content[1:]))
            sealed = b"".join(read_blob(n) for n in manifest_blobs)
        elif content[:1] == _INLINE_HEAD:
            sealed = content[1:]
        else:
            raise StoreError("the manager's head is not a Sealwire state")
        try:
            manifest = json.loads(unseal_value(self.key, _HEAD_NS, self.label, sealed))
        except AuthenticationError:
            raise AuthenticationError(
                "the manager's head failed authentication: a wrong store key, or a value "
                "changed behind the agent's back"
            ) from None
        if manifest.get("v") != MANIFEST_VERSION:
            raise StoreError(f"manifest version {manifest.get('v')!r} is not supported")
        entries: dict[Key, Entry] = {}
        values: dict[Key, bytes] = {}
        for ns, key, kind, ref in manifest["e"]:
            if kind == "i":
                value = unb64(ref)
                entries[(ns, key)] = ("i", value)
            else:
                names = tuple(ref)
                entries[(ns, key)] = ("r", names)
                blob = b"".join(read_blob(n) for n in names)
                value = unseal_value(self.key, ns, key, blob)
            values[(ns, key)] = value
        return Head(
            version=version,
            generation=int(manifest["g"]),
            entries=entries,
            values=values,
            content=content,
            commit=str(manifest.get("c", "")),
            manifest_blobs=manifest_blobs,
        )


def changed_keys(old: Head, new: Head) -> set[Key]:
    """The keys whose entry differs between two heads."""
    keys = set(old.entries) | set(new.entries)
    return {k for k in keys if old.entries.get(k) != new.entries.get(k)}


def conflicts(changed: set[Key], touched: set[Key], ranges: set[Key]) -> bool:
    """Whether ``changed`` keys hit a key a transaction touched or a range it listed."""
    if changed & touched:
        return True
    return any(
        ns == rns and key.startswith(prefix) for ns, key in changed for rns, prefix in ranges
    )
