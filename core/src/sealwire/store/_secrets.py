"""What a secrets manager offers the managed store: the :class:`SecretsBackend`
protocol each store plugin implements, the :class:`LostRace` of its compare-and-set,
and the :class:`CallCounter` of the calls made to it."""

from __future__ import annotations

from typing import Protocol

import attrs

__all__ = ["CallCounter", "LostRace", "SecretsBackend"]


class LostRace(Exception):
    """The manager's head is no longer the version a compare-and-set expected."""


class SecretsBackend(Protocol):
    """What a secrets manager offers the engine; every call may raise a StoreError."""

    def read_head(self) -> tuple[str, bytes] | None:
        """The current head's version id and content, or None when there is none."""
        ...

    def write_head(self, base: str | None, content: bytes, token: str) -> str:
        """Make ``content`` the head if the current head is still ``base``.

        ``token`` names the new version (retries of one attempt reuse it).
        :returns: the new version id. :raises LostRace: the head is not ``base``.
        """
        ...

    def write_blob(self, name: str, content: bytes) -> None: ...
    def read_blob(self, name: str) -> bytes: ...
    def delete_blob(self, name: str) -> None: ...
    def close(self) -> None: ...


@attrs.define
class CallCounter:
    """Calls and bytes sent to the manager, by kind (for the benchmark and the docs)."""

    calls: dict[str, int] = attrs.field(factory=dict)
    bytes_sent: int = 0
    bytes_received: int = 0

    def count(self, kind: str, sent: int = 0, received: int = 0) -> None:
        self.calls[kind] = self.calls.get(kind, 0) + 1
        self.bytes_sent += sent
        self.bytes_received += received

    @property
    def total(self) -> int:
        return sum(self.calls.values())
