"""Messages and their parts (A2A v1.0 spec §4.1.4 Message, §4.1.6 Part).

Rules of the model modules:

* Every type is a frozen attrs class; sequences are tuples, free-form JSON
  objects are ``Mapping[str, Any]``, JSON values ``Any``, and proto maps
  ``Mapping[str, X]`` (empty by default: an empty map is an absent one).
* A field's JSON name is its attribute name in camelCase (proto3 JSON).
* A field without a default is required on the wire, except a repeated one
  (proto3 cannot tell an empty list from a missing one, so a missing list is
  empty). A field whose default is ``None`` is absent when ``None``. Proto3
  string fields without presence use :func:`blank_to_none`, so ``""`` and
  "absent" are one value, as in protobuf.
* A class with ``ONEOF`` holds exactly one of those fields (a proto ``oneof``).
* ``metadata={"json": "timestamp"}`` marks an RFC 3339 timestamp string; it
  is carried as written (protobuf may respell it, e.g. ``.5Z`` as ``.500Z``).
* ``Part.data`` cannot be JSON ``null`` (``None`` means "no data").
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, ClassVar

from attrs import field, frozen

__all__ = ["Message", "Part", "Role", "blank_to_none"]

TIMESTAMP = {"json": "timestamp"}
"""attrs field metadata marking a ``google.protobuf.Timestamp`` (RFC 3339 string)."""


def blank_to_none(value: str | None) -> str | None:
    """Converter for proto3 strings without presence: ``""`` is the same as absent."""
    return value or None


class Role(enum.Enum):
    """Who sent a message (spec §4.1.5). Members are declared in proto number order."""

    USER = "ROLE_USER"
    AGENT = "ROLE_AGENT"


def _check_one_of(instance: Any, names: tuple[str, ...]) -> None:
    present = [name for name in names if getattr(instance, name) is not None]
    if len(present) != 1:
        kind = type(instance).__name__
        raise ValueError(f"{kind} holds exactly one of {', '.join(names)}; got {present}")


@frozen(kw_only=True)
class Part:
    """One piece of content of a message or artifact (spec §4.1.6).

    Exactly one of ``text``, ``raw`` (bytes, base64 on the wire), ``url`` or
    ``data`` (any JSON value except ``null``) is set; ``metadata``,
    ``filename`` and ``media_type`` describe it.
    """

    ONEOF: ClassVar[tuple[str, ...]] = ("text", "raw", "url", "data")

    text: str | None = None
    raw: bytes | None = None
    url: str | None = None
    data: Any = None
    metadata: Mapping[str, Any] | None = None
    filename: str | None = field(default=None, converter=blank_to_none)
    media_type: str | None = field(default=None, converter=blank_to_none)

    def __attrs_post_init__(self) -> None:
        _check_one_of(self, self.ONEOF)

    @property
    def kind(self) -> str:
        """Which content the part holds: ``text``, ``raw``, ``url`` or ``data``."""
        return next(name for name in self.ONEOF if getattr(self, name) is not None)

    @classmethod
    def from_text(cls, text: str, *, media_type: str | None = None) -> Part:
        """A text part."""
        return cls(text=text, media_type=media_type)

    @classmethod
    def from_data(cls, data: Any, *, media_type: str | None = None) -> Part:
        """A structured-data part (any JSON value but ``null``)."""
        return cls(data=data, media_type=media_type)

    @classmethod
    def from_raw(
        cls, raw: bytes, *, media_type: str | None = None, filename: str | None = None
    ) -> Part:
        """A part carrying file bytes inline."""
        return cls(raw=bytes(raw), media_type=media_type, filename=filename)

    @classmethod
    def from_url(
        cls, url: str, *, media_type: str | None = None, filename: str | None = None
    ) -> Part:
        """A part pointing at file content by URL."""
        return cls(url=url, media_type=media_type, filename=filename)


@frozen(kw_only=True)
class Message:
    """One turn of communication between a client and an agent (spec §4.1.4)."""

    message_id: str
    role: Role
    parts: tuple[Part, ...]
    context_id: str | None = field(default=None, converter=blank_to_none)
    task_id: str | None = field(default=None, converter=blank_to_none)
    metadata: Mapping[str, Any] | None = None
    extensions: tuple[str, ...] = ()
    reference_task_ids: tuple[str, ...] = ()
