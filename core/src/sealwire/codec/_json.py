"""Model objects to and from proto3 JSON (the ProtoJSON mapping A2A v1.0 uses).

Rules of this file:

* The plan for each model class is derived once from its attrs fields and
  type hints (see :mod:`sealwire.model._message` for the conventions) and
  cached.
* Encoding omits what protobuf's ``json_format.MessageToDict`` omits: absent
  optional fields, empty lists and maps, ``false``/``0``/``""`` of fields
  without presence; a set message field is always written, even empty
  (``"capabilities": {}``), and so is a required string (even ``""``, which
  the decoder would otherwise take as missing). Except: a field a2a.proto
  marks ``REQUIRED`` is always written, even at its default
  (:data:`ALWAYS_WRITTEN`: an empty ListTasks page is
  ``{"tasks": [], "nextPageToken": "", "pageSize": 0, "totalSize": 0}``). Bytes are standard base64
  with padding. So ``to_json`` of a card is ``MessageToDict`` of it, the base
  of the canonical form a2a-sdk signs and verifies (spec §8.4).
* Decoding is strict the way proto3 JSON parsers are: a wrong type, a missing
  required field, an unknown enum value or a broken oneof raises
  :class:`InvalidParamsError` naming the field path
  (``message.parts[0].text``); a required array must hold at least one
  element (spec §5.7; :data:`NON_EMPTY`). Unknown fields are ignored; ``null`` means
  absent; both the camelCase and the proto field name are accepted; int32
  fields also take decimal strings, bytes fields URL-safe base64.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import enum
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs

from sealwire.codec._errors import A2AError, InvalidParamsError
from sealwire.model import Artifact, ListTasksResponse, Message

__all__ = [
    "ALWAYS_WRITTEN",
    "MAX_JSON_DEPTH",
    "NON_EMPTY",
    "from_json",
    "is_text",
    "json_is_text",
    "to_json",
]

T = TypeVar("T")

MAX_JSON_DEPTH = 64
"""Nesting allowed inside free-form JSON (metadata, data parts): deeper input is
refused, so a hostile peer cannot make checking or copying it recurse without end."""

MAX_KEY_IN_PATH = 32
"""Characters of a free-form object key quoted in an error's field path."""

ALWAYS_WRITTEN: Mapping[type, frozenset[str]] = {
    ListTasksResponse: frozenset({"tasks", "next_page_token", "page_size", "total_size"}),
    Message: frozenset({"parts"}),
    Artifact: frozenset({"parts"}),
}
"""Fields a2a.proto marks ``REQUIRED`` whose model attribute has a default (so proto3
JSON would drop them at it): written whatever their value. (The card's required
arrays are left out: its canonical form for signatures is ``MessageToDict``'s.)"""

NON_EMPTY: Mapping[type, frozenset[str]] = {
    Message: frozenset({"parts"}),
    Artifact: frozenset({"parts"}),
}
"""Required arrays (a2a.proto ``REQUIRED`` repeated fields) of what peers send:
missing or empty is refused (spec §5.7). A ListTasks page may be empty."""

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_TIMESTAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})", re.ASCII
)
_INT_STRING = re.compile(r"-?[0-9]{1,10}", re.ASCII)
_BASE64 = re.compile(r"[A-Za-z0-9+/\-_]*={0,2}", re.ASCII)
_SURROGATE = re.compile("[\ud800-\udfff]")
NOT_TEXT = "lone surrogate: not Unicode text"
"""Why a string holding a lone surrogate (``"\\ud800"``) is refused."""


def is_text(value: str) -> bool:
    """Whether ``value`` is Unicode text: no lone surrogate, so it encodes as UTF-8.

    JSON lets a ``\\uD800`` escape through without its pair, and Python's
    decoder keeps it as a lone surrogate that no encoder writes back out: such a
    string is refused where it enters, not when an answer or a store write fails.
    """
    return value.isascii() or _SURROGATE.search(value) is None


def json_is_text(value: Any) -> bool:
    """Whether every string (and object key) in a decoded JSON value is :func:`is_text`.

    Iterative, so any depth the JSON decoder produced is walked without recursion.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not is_text(item):
                return False
        elif isinstance(item, Mapping):
            for key, inner in item.items():
                if isinstance(key, str) and not is_text(key):
                    return False
                stack.append(inner)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return True


Decoder = Callable[[Any, str], Any]
Encoder = Callable[[Any], Any]


class _Error(Exception):
    """Raised inside the decoder; turned into the caller's error class at the top."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _fail(path: str, message: str) -> typing.NoReturn:
    raise _Error(path, message)


def _kind_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


# -- scalars -------------------------------------------------------------------------------


def _decode_str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        _fail(path, f"expected a string, got {_kind_name(value)}")
    if not is_text(value):
        _fail(path, NOT_TEXT)
    return value


def _decode_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        _fail(path, f"expected a boolean, got {_kind_name(value)}")
    return value


def _decode_int32(value: Any, path: str) -> int:
    if isinstance(value, bool):
        _fail(path, "expected an integer, got boolean")
    integral_float = isinstance(value, float) and math.isfinite(value) and value.is_integer()
    if integral_float or (isinstance(value, str) and _INT_STRING.fullmatch(value)):
        value = int(value)
    if not isinstance(value, int):
        _fail(path, f"expected an integer, got {_kind_name(value)}")
    if not _INT32_MIN <= value <= _INT32_MAX:
        _fail(path, "integer out of int32 range")
    return value


def _decode_bytes(value: Any, path: str) -> bytes:
    if not isinstance(value, str):
        _fail(path, f"expected a base64 string, got {_kind_name(value)}")
    if not _BASE64.fullmatch(value):
        _fail(path, "invalid base64")
    text = value.rstrip("=").replace("-", "+").replace("_", "/")
    if len(text) % 4 == 1:
        _fail(path, "invalid base64 length")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        _fail(path, "invalid base64")


def _decode_timestamp(value: Any, path: str) -> str:
    text = _decode_str(value, path)
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        _fail(path, "expected an RFC 3339 timestamp")
    date, clock, _, offset = match.groups()
    try:
        datetime.datetime.fromisoformat(f"{date}T{clock}{'+00:00' if offset == 'Z' else offset}")
    except ValueError:
        _fail(path, "expected an RFC 3339 timestamp")
    return text


class _JsonError(Exception):
    """A free-form JSON value is wrong; ``where`` is its path inside that value."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


def _check_json(value: Any, depth: int) -> Any:
    """Check a free-form JSON value and return a fresh copy of it.

    Paths are built only on failure, while unwinding, so big arrays cost no strings.
    """
    if depth > MAX_JSON_DEPTH:
        raise _JsonError("", f"JSON nested deeper than {MAX_JSON_DEPTH}")
    if isinstance(value, str):
        if not is_text(value):
            raise _JsonError("", NOT_TEXT)
        return value
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _JsonError("", "number is not finite")
        return value
    if isinstance(value, (list, tuple)):
        out = []
        for index, item in enumerate(value):
            try:
                out.append(_check_json(item, depth + 1))
            except _JsonError as exc:
                exc.where = f"[{index}]{exc.where}"
                raise
        return out
    if isinstance(value, Mapping):
        return _check_object(value, depth)
    raise _JsonError("", f"not a JSON value ({_kind_name(value)})")


def _check_object(value: Mapping[Any, Any], depth: int) -> dict[str, Any]:
    copy: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise _JsonError("", "object keys must be strings")
        if not is_text(key):
            raise _JsonError("", f"object key: {NOT_TEXT}")
        try:
            copy[key] = _check_json(item, depth + 1)
        except _JsonError as exc:
            # keys are the peer's text: keep paths (and error messages) short
            short = key if len(key) <= MAX_KEY_IN_PATH else key[:MAX_KEY_IN_PATH] + "..."
            exc.where = f".{short}{exc.where}"
            raise
    return copy


def _decode_object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        _fail(path, f"expected an object, got {_kind_name(value)}")
    try:
        return _check_object(value, 0)
    except _JsonError as exc:
        _fail(path + exc.where, exc.message)


def _decode_value(value: Any, path: str) -> Any:
    if value is None:
        _fail(path, "a null JSON value is not supported here")
    try:
        return _check_json(value, 0)
    except _JsonError as exc:
        _fail(path + exc.where, exc.message)


def _copy_json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _copy_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy_json(item) for item in value]
    return value


def _enum_codec(cls: type[enum.Enum]) -> tuple[Decoder, Encoder]:
    by_name = {member.value: member for member in cls}
    by_number = {number: member for number, member in enumerate(cls, start=1)}

    def decode(value: Any, path: str) -> enum.Enum:
        if isinstance(value, str) and value in by_name:
            return by_name[value]
        if isinstance(value, int) and not isinstance(value, bool) and value in by_number:
            return by_number[value]
        _fail(path, f"unknown {cls.__name__} value")

    return decode, lambda member: member.value


# -- composite types -----------------------------------------------------------------------


def _tuple_codec(item: Any) -> tuple[Decoder, Encoder]:
    decode_item, encode_item = _codec_for(item)

    def decode(value: Any, path: str) -> tuple[Any, ...]:
        if not isinstance(value, list):
            _fail(path, f"expected an array, got {_kind_name(value)}")
        return tuple(decode_item(x, f"{path}[{i}]") for i, x in enumerate(value))

    return decode, lambda items: [encode_item(x) for x in items]


def _map_codec(value_type: Any) -> tuple[Decoder, Encoder]:
    decode_value, encode_value = _codec_for(value_type)

    def decode(value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            _fail(path, f"expected an object, got {_kind_name(value)}")
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                _fail(path, "object keys must be strings")
            if not is_text(key):
                _fail(path, f"object key: {NOT_TEXT}")
            out[key] = decode_value(item, f"{path}.{key[:MAX_KEY_IN_PATH]}")
        return out

    return decode, lambda items: {key: encode_value(item) for key, item in items.items()}


def _as_is(value: Any) -> Any:
    """The encoder of a value whose JSON is itself (strings, booleans, integers)."""
    return value


def _model_codec(tp: type) -> tuple[Decoder, Encoder]:
    """A model class's plan, looked up once (at first use: plans may name each other)."""
    found: list[_Plan] = []

    def plan() -> _Plan:
        if not found:
            found.append(_plan(tp))
        return found[0]

    def decode(value: Any, path: str) -> Any:
        return (found[0] if found else plan()).decode(value, path)

    def encode(value: Any) -> dict[str, Any]:
        return (found[0] if found else plan()).encode(value)

    return decode, encode


def _codec_for(tp: Any) -> tuple[Decoder, Encoder]:
    """Decoder and encoder for one (non-optional) type hint."""
    origin = typing.get_origin(tp)
    if tp is str:
        return _decode_str, _as_is
    if tp is bool:
        return _decode_bool, _as_is
    if tp is int:
        return _decode_int32, _as_is
    if tp is bytes:
        return _decode_bytes, lambda v: base64.b64encode(v).decode("ascii")
    if tp is Any:
        return _decode_value, _copy_json
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum_codec(tp)
    if isinstance(tp, type) and attrs.has(tp):
        return _model_codec(tp)
    if origin is tuple:
        return _tuple_codec(typing.get_args(tp)[0])
    if origin is Mapping:
        value_type = typing.get_args(tp)[1]
        return (_decode_object, _copy_json) if value_type is Any else _map_codec(value_type)
    raise TypeError(f"no JSON codec for {tp!r}")  # a bug in the model, found at import of tests


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@attrs.frozen
class _Field:
    name: str
    json_name: str
    decode: Decoder
    encode: Encoder
    required: bool
    default: Any
    fill: bool  # pass ``default`` when missing: the attrs field has none (a repeated field)
    always: bool  # written even at its default (ALWAYS_WRITTEN)


class _Plan:
    """How one model class maps to a JSON object."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        hints = typing.get_type_hints(cls)
        self.oneof: tuple[str, ...] = getattr(cls, "ONEOF", ())
        always = ALWAYS_WRITTEN.get(cls, frozenset())
        self.non_empty = sorted(NON_EMPTY.get(cls, frozenset()))
        self.fields: list[_Field] = []
        for f in attrs.fields(cls):
            tp = _strip_optional(hints[f.name])
            decode: Decoder
            encode: Encoder
            if f.metadata.get("json") == "timestamp":
                decode, encode = _decode_timestamp, _as_is
            else:
                decode, encode = _codec_for(tp)
            default = f.default
            if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                default = default.factory()
            fill = default is attrs.NOTHING and typing.get_origin(tp) is tuple
            if fill:
                default = ()  # proto3 cannot tell an empty repeated field from a missing one
            required = default is attrs.NOTHING
            self.fields.append(
                _Field(
                    f.name,
                    _camel(f.name),
                    decode,
                    encode,
                    required,
                    default,
                    fill,
                    f.name in always,
                )
            )
        # every accepted key (camelCase, and the proto name) -> its field
        self.by_key = {f.json_name: f for f in self.fields} | {
            f.name: f for f in self.fields if f.name != f.json_name
        }
        self.required = [f for f in self.fields if f.required]
        self.fills = [f for f in self.fields if f.fill]
        # what encode walks: (attribute, JSON name, encoder or None when the value is its
        # own JSON, written whatever its value, default is None, default)
        self._encoding = tuple(
            (
                f.name,
                f.json_name,
                None if f.encode is _as_is else f.encode,
                f.required or f.always,
                f.default is None,
                f.default,
            )
            for f in self.fields
        )
        # the fields whose value is a plain string: taken as is when it is ASCII text
        self._plain_str = frozenset(f.name for f in self.fields if f.decode is _decode_str)

    def encode(self, obj: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, key, encode, always, none_default, default in self._encoding:
            value = getattr(obj, name)
            if not always and (value is None or (not none_default and value == default)):
                continue  # absent, or at its default (a None default: only None is)
            out[key] = value if encode is None else encode(value)
        return out

    def decode(self, data: Any, path: str) -> Any:
        if not isinstance(data, Mapping):
            _fail(path or "$", f"expected an object, got {_kind_name(data)}")
        kwargs: dict[str, Any] = {}
        prefix = f"{path}." if path else ""
        by_key, plain_str = self.by_key, self._plain_str
        # walk the keys present (usually far fewer than the fields declared)
        for key, value in data.items():
            f = by_key.get(key)
            if f is None or value is None:
                continue  # unknown fields are ignored; null means absent
            if key != f.json_name and data.get(f.json_name) is not None:
                continue  # the camelCase name wins over the proto name
            if type(value) is str and f.name in plain_str and value.isascii():
                kwargs[f.name] = value  # what _decode_str returns, without a path built
            else:
                kwargs[f.name] = f.decode(value, prefix + f.json_name)
        for f in self.required:
            if f.name not in kwargs:
                _fail(prefix + f.json_name, "required field is missing")
        for name in self.non_empty:
            if name not in kwargs:
                _fail(prefix + _camel(name), "required field is missing")
            if not kwargs[name]:
                _fail(prefix + _camel(name), "required array must hold at least one element")
        for f in self.fills:
            kwargs.setdefault(f.name, f.default)
        if self.oneof:
            present = [name for name in self.oneof if kwargs.get(name) is not None]
            if len(present) != 1:
                names = ", ".join(_camel(name) for name in self.oneof)
                _fail(path or "$", f"exactly one of {names} is required, got {len(present)}")
        try:
            return self.cls(**kwargs)
        except (TypeError, ValueError) as exc:  # a model invariant the checks above missed
            _fail(path or "$", f"invalid {self.cls.__name__}: {type(exc).__name__}")


_PLANS: dict[type, _Plan] = {}


def _plan(cls: type) -> _Plan:
    plan = _PLANS.get(cls)
    if plan is None:
        plan = _PLANS[cls] = _Plan(cls)
    return plan


def to_json(obj: Any) -> dict[str, Any]:
    """The proto3 JSON object of a model object (spec field names, camelCase)."""
    if not attrs.has(type(obj)):
        raise TypeError(f"not a model object: {type(obj).__name__}")
    return _plan(type(obj)).encode(obj)


def from_json(
    cls: type[T], data: Any, *, path: str = "", error: type[A2AError] = InvalidParamsError
) -> T:
    """Decode a proto3 JSON object into ``cls``, strictly.

    Raises ``error`` (by default :class:`InvalidParamsError`, -32602) whose
    ``field`` is the path of the offending field, prefixed with ``path``.
    """
    try:
        return _plan(cls).decode(data, path)  # type: ignore[no-any-return]
    except _Error as exc:
        raise error(exc.message, field=exc.path) from None
    except RecursionError:
        raise error("input nested too deeply", field=path or "$") from None
