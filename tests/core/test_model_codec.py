"""The A2A model and its proto3 JSON codec (sealwire.model, sealwire.codec.to_json/from_json).

Properties: every model type round-trips through JSON text; arbitrary JSON
gives a model object or InvalidParamsError only. Tables: malformed inputs
give -32602 naming the field path; encoding omits what json_format omits.
"""

from __future__ import annotations

import datetime
import enum
import json
import typing
from collections.abc import Mapping
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealwire.codec import NON_EMPTY, A2AError, InvalidParamsError, from_json, to_json
from sealwire.errors import DecodeError
from sealwire.model import (
    MODEL_TYPES,
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    Artifact,
    AuthenticationInfo,
    GetTaskRequest,
    ListTasksResponse,
    Message,
    Part,
    Role,
    SendMessageRequest,
    SendMessageResponse,
    StreamResponse,
    Task,
    TaskPushNotificationConfig,
    TaskState,
    TaskStatus,
)

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_non_null_scalars = (
    st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    st.none() | json_non_null_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
json_objects = st.dictionaries(st.text(max_size=6), json_values, max_size=3)
json_non_null = json_non_null_scalars | st.lists(json_values, max_size=3) | json_objects
"""A JSON value but a bare null, drawn without rejections (filters nested through the
models trip Hypothesis's filter_too_much health check)."""
timestamps = st.datetimes(
    min_value=datetime.datetime(1970, 1, 1), max_value=datetime.datetime(2200, 1, 1)
).map(lambda d: d.isoformat(timespec="milliseconds") + "Z")


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return tp, False


def strategy_for_type(tp: Any) -> st.SearchStrategy[Any]:
    inner, optional = _strip_optional(tp)
    base = _strategy_for(inner)
    return st.none() | base if optional else base


def _strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    origin = typing.get_origin(tp)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        str: st.text(max_size=10),
        bool: st.booleans(),
        int: st.integers(-(2**31), 2**31 - 1),
        bytes: st.binary(max_size=16),
        Any: json_non_null,
    }
    if tp in simple:
        return simple[tp]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    if isinstance(tp, type) and attrs.has(tp):
        return st.deferred(lambda: model_strategy(tp))
    if origin is tuple:
        return st.lists(_strategy_for(typing.get_args(tp)[0]), max_size=2).map(tuple)
    if origin is Mapping:
        value_type = typing.get_args(tp)[1]
        if value_type is Any:
            return json_objects
        return st.dictionaries(st.text(max_size=5), _strategy_for(value_type), max_size=2)
    raise TypeError(tp)


def model_strategy(cls: type) -> st.SearchStrategy[Any]:
    """Any valid instance of a model class, derived from its fields and type hints."""
    hints = typing.get_type_hints(cls)
    oneof: tuple[str, ...] = getattr(cls, "ONEOF", ())
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for f in attrs.fields(cls):
        if f.name in oneof:
            continue
        if f.metadata.get("json") == "timestamp":
            fields[f.name] = st.none() | timestamps
        elif f.name in NON_EMPTY.get(cls, ()):  # required arrays hold an element (§5.7)
            item = _strategy_for(typing.get_args(hints[f.name])[0])
            fields[f.name] = st.lists(item, min_size=1, max_size=2).map(tuple)
        else:
            fields[f.name] = strategy_for_type(hints[f.name])
    if not oneof:
        return st.builds(cls, **fields)
    choices = [
        st.builds(cls, **fields, **{name: _strategy_for(_strip_optional(hints[name])[0])})
        for name in oneof
    ]
    return st.one_of(choices)


MODEL_IDS = [cls.__name__ for cls in MODEL_TYPES]


def test_every_model_type_is_covered() -> None:
    assert len(MODEL_TYPES) >= 30
    assert Message in MODEL_TYPES and AgentCard in MODEL_TYPES and StreamResponse in MODEL_TYPES


@pytest.mark.parametrize("cls", MODEL_TYPES, ids=MODEL_IDS)
@SETTINGS
@given(data=st.data())
def test_round_trip_through_json_text(cls: type, data: st.DataObject) -> None:
    obj = data.draw(model_strategy(cls))
    encoded = to_json(obj)
    text = json.dumps(encoded, allow_nan=False)
    assert from_json(cls, json.loads(text)) == obj


@pytest.mark.parametrize("cls", MODEL_TYPES, ids=MODEL_IDS)
@settings(max_examples=25, deadline=None)
@given(value=json_values)
def test_arbitrary_json_gives_object_or_invalid_params(cls: type, value: Any) -> None:
    try:
        obj: Any = from_json(cls, value)
    except InvalidParamsError as exc:
        assert isinstance(exc, DecodeError) and exc.code == -32602 and exc.field
    else:
        assert isinstance(obj, cls)


@SETTINGS
@given(
    msg=model_strategy(Message),
    key=st.sampled_from(["messageId", "role", "parts"]),
    junk=st.sampled_from([5, True, [], {}, "x", 1.5]),
)
def test_wrong_type_names_the_field(msg: Message, key: str, junk: Any) -> None:
    encoded = to_json(SendMessageRequest(message=msg))
    encoded["message"][key] = junk
    if key == "messageId" and isinstance(junk, str):
        assert from_json(SendMessageRequest, encoded).message.message_id == junk
        return
    with pytest.raises(InvalidParamsError) as info:
        from_json(SendMessageRequest, encoded)
    assert info.value.field == f"message.{key}"


MESSAGE = {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}]}

MALFORMED = [
    (SendMessageRequest, {"message": {**MESSAGE, "parts": [{"text": 5}]}}, "message.parts[0].text"),
    (SendMessageRequest, {}, "message"),
    (SendMessageRequest, {"message": {**MESSAGE, "role": "ROLE_ROBOT"}}, "message.role"),
    (SendMessageRequest, {"message": {**MESSAGE, "role": "ROLE_UNSPECIFIED"}}, "message.role"),
    (SendMessageRequest, {"message": {**MESSAGE, "role": 7}}, "message.role"),
    (SendMessageRequest, {"message": {**MESSAGE, "parts": [{}]}}, "message.parts[0]"),
    (
        SendMessageRequest,
        {"message": {**MESSAGE, "parts": [{"text": "a", "url": "b"}]}},
        "message.parts[0]",
    ),
    (
        SendMessageRequest,
        {"message": {**MESSAGE, "parts": [{"raw": "!!"}]}},
        "message.parts[0].raw",
    ),
    (SendMessageRequest, {"message": {**MESSAGE, "parts": [{"raw": "A"}]}}, "message.parts[0].raw"),
    (SendMessageRequest, {"message": {**MESSAGE, "parts": {"text": "x"}}}, "message.parts"),
    (SendMessageRequest, {"message": {**MESSAGE, "metadata": []}}, "message.metadata"),
    (SendMessageRequest, {"message": MESSAGE, "metadata": {"a": float("nan")}}, "metadata.a"),
    (
        SendMessageRequest,
        {"message": MESSAGE, "configuration": {"historyLength": 2**31}},
        "configuration.historyLength",
    ),
    (
        SendMessageRequest,
        {"message": MESSAGE, "configuration": {"historyLength": True}},
        "configuration.historyLength",
    ),
    (
        SendMessageRequest,
        {"message": MESSAGE, "configuration": {"historyLength": "1e3"}},
        "configuration.historyLength",
    ),
    (
        SendMessageRequest,
        {"message": MESSAGE, "configuration": {"acceptedOutputModes": [1]}},
        "configuration.acceptedOutputModes[0]",
    ),
    (GetTaskRequest, {"id": 5}, "id"),
    (GetTaskRequest, [], "$"),
    (Task, {"id": "t", "contextId": "c", "status": {"state": "TASK_STATE_DONE"}}, "status.state"),
    (
        Task,
        {
            "id": "t",
            "contextId": "c",
            "status": {"state": "TASK_STATE_COMPLETED", "timestamp": "yesterday"},
        },
        "status.timestamp",
    ),
    (
        Task,
        {
            "id": "t",
            "contextId": "c",
            "status": {"state": "TASK_STATE_COMPLETED", "timestamp": "2024-13-01T00:00:00Z"},
        },
        "status.timestamp",
    ),
    (Task, {"id": "t", "contextId": "c"}, "status"),
    (StreamResponse, {}, "$"),
    (
        StreamResponse,
        {"task": {"id": "t", "contextId": "c", "status": {"state": 3}}, "message": MESSAGE},
        "$",
    ),
    (SendMessageResponse, {"message": {**MESSAGE, "extensions": "x"}}, "message.extensions"),
    (AgentCard, {"name": "n"}, "description"),
    (ListTasksResponse, {"tasks": [{"id": "t"}]}, "tasks[0].contextId"),
]


@pytest.mark.parametrize(("cls", "data", "path"), MALFORMED)
def test_malformed_input_names_the_field(cls: type, data: Any, path: str) -> None:
    with pytest.raises(InvalidParamsError) as info:
        from_json(cls, data)
    assert info.value.field == path
    assert info.value.code == -32602
    assert info.value.to_rpc_error().message.startswith(path)


@pytest.mark.parametrize("part", [{}, {"text": "a", "url": "b"}, {"filename": "f"}])
def test_broken_oneof_says_which_fields(part: dict[str, Any]) -> None:
    with pytest.raises(InvalidParamsError, match="exactly one of text, raw, url, data"):
        from_json(Part, part)


def test_deep_json_is_refused() -> None:
    deep: Any = "x"
    for _ in range(200):
        deep = [deep]
    with pytest.raises(InvalidParamsError) as info:
        from_json(SendMessageRequest, {"message": MESSAGE, "metadata": {"a": deep}})
    assert info.value.field is not None and info.value.field.startswith("metadata.a")


def test_error_text_never_echoes_values() -> None:
    secret = "s3cr3t-value"
    with pytest.raises(A2AError) as info:
        from_json(SendMessageRequest, {"message": {**MESSAGE, "role": secret}})
    assert secret not in str(info.value) and secret not in repr(info.value.to_rpc_error())


def test_encoding_omits_defaults_like_json_format() -> None:
    msg = Message(message_id="m", role=Role.AGENT, parts=(Part.from_text(""),), context_id="")
    assert to_json(msg) == {"messageId": "m", "role": "ROLE_AGENT", "parts": [{"text": ""}]}
    card = AgentCard(
        name="a",
        description="d",
        version="1",
        capabilities=AgentCapabilities(),
        supported_interfaces=(
            AgentInterface(url="tcp://x", protocol_binding="b", protocol_version="1.0"),
        ),
        security_schemes={},
    )
    assert to_json(card) == {
        "name": "a",
        "description": "d",
        "version": "1",
        "capabilities": {},
        "supportedInterfaces": [
            {"url": "tcp://x", "protocolBinding": "b", "protocolVersion": "1.0"}
        ],
    }
    assert to_json(AgentCapabilities(streaming=False)) == {"streaming": False}
    # ...except a2a.proto's REQUIRED fields (test_required_fields_are_written_...)
    assert to_json(ListTasksResponse())["nextPageToken"] == ""
    assert to_json(Part.from_raw(b"\xff\x00ab")) == {"raw": "/wBhYg=="}


def test_decoding_is_lenient_where_proto3_json_is() -> None:
    data = {
        "message_id": "m",  # the proto field name is accepted too
        "role": 1,  # enum numbers are accepted
        "parts": [{"raw": "_w-_", "media_type": "a/b"}],  # URL-safe base64, unpadded
        "contextId": None,  # null means absent
        "somethingNew": {"x": 1},  # unknown fields are ignored
    }
    msg = from_json(Message, data)
    assert msg == Message(
        message_id="m", role=Role.USER, parts=(Part.from_raw(b"\xff\x0f\xbf", media_type="a/b"),)
    )
    both = {"id": "t", "history_length": 1, "historyLength": 2}
    assert from_json(GetTaskRequest, both).history_length == 2  # camelCase wins
    assert from_json(GetTaskRequest, {"id": "t", "historyLength": "12"}).history_length == 12
    assert from_json(GetTaskRequest, {"id": "t", "historyLength": 3.0}).history_length == 3


def test_part_holds_exactly_one_content() -> None:
    assert Part.from_text("a").kind == "text"
    assert Part.from_data({"k": 1}).kind == "data"
    assert Part.from_url("https://x", filename="f").kind == "url"
    assert Part.from_raw(b"x", media_type="text/plain").kind == "raw"
    with pytest.raises(ValueError, match="exactly one"):
        Part(text="a", url="b")
    with pytest.raises(ValueError, match="exactly one"):
        Part()
    with pytest.raises(ValueError, match="exactly one"):
        StreamResponse()


def test_task_states() -> None:
    terminal = {s for s in TaskState if s.is_terminal}
    assert terminal == {
        TaskState.COMPLETED,
        TaskState.FAILED,
        TaskState.CANCELED,
        TaskState.REJECTED,
    }
    assert {s for s in TaskState if s.is_interrupted} == {
        TaskState.INPUT_REQUIRED,
        TaskState.AUTH_REQUIRED,
    }
    assert len(TaskState) == 8
    assert to_json(TaskStatus(TaskState.AUTH_REQUIRED)) == {"state": "TASK_STATE_AUTH_REQUIRED"}


def test_secrets_stay_out_of_repr() -> None:
    config = TaskPushNotificationConfig(
        url="https://hook",
        token="tok-secret",
        authentication=AuthenticationInfo("Bearer", "cred-secret"),
    )
    assert "tok-secret" not in repr(config) and "cred-secret" not in repr(config)
    assert to_json(config)["token"] == "tok-secret"


def test_to_json_refuses_non_model_objects() -> None:
    with pytest.raises(TypeError):
        to_json({"a": 1})


def test_required_fields_are_written_even_at_their_default() -> None:
    """a2a.proto REQUIRED fields are always on the wire (issue 24): an empty page is whole."""
    assert to_json(ListTasksResponse()) == {
        "tasks": [], "nextPageToken": "", "pageSize": 0, "totalSize": 0}  # fmt: skip
    assert to_json(Message(message_id="m", role=Role.USER, parts=()))["parts"] == []


@pytest.mark.parametrize("cls", [Message, Artifact])
@pytest.mark.parametrize("parts", [{"parts": []}, {}], ids=["empty", "missing"])
def test_required_arrays_must_hold_an_element(cls: type, parts: dict[str, Any]) -> None:
    data = {"messageId": "m", "role": "ROLE_USER", "artifactId": "a"} | parts
    with pytest.raises(InvalidParamsError) as info:
        from_json(cls, data)
    assert info.value.field == "parts"


LONE_SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]


def _strings(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], bool]]:
    """Where strings are in a JSON value: (path, is an object key)."""
    found: list[tuple[tuple[Any, ...], bool]] = []
    if isinstance(value, str):
        found.append((path, False))
    elif isinstance(value, dict):
        for key, item in value.items():
            found.append(((*path, key), True))
            found.extend(_strings(item, (*path, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_strings(item, (*path, index)))
    return found


def _spoil(value: Any, path: tuple[Any, ...], is_key: bool, lone: str) -> Any:
    """``value`` with a lone surrogate put into the string (or key) at ``path``."""
    if len(path) == (1 if is_key else 0):
        if is_key:
            return {(k + lone if k == path[0] else k): v for k, v in value.items()}
        return value + lone
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {k: (_spoil(v, rest, is_key, lone) if k == head else v) for k, v in value.items()}
    return [(_spoil(v, rest, is_key, lone) if i == head else v) for i, v in enumerate(value)]


@pytest.mark.parametrize("cls", MODEL_TYPES, ids=MODEL_IDS)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_lone_surrogate_anywhere_is_invalid_params(cls: type, data: st.DataObject) -> None:
    """Issue 18 item 3: a valid object with one string made unwritable is refused, with
    -32602 naming a field; whatever decodes can be written back as UTF-8."""
    encoded = json.loads(json.dumps(to_json(data.draw(model_strategy(cls)))))
    places = _strings(encoded)
    if not places:
        return
    path, is_key = data.draw(st.sampled_from(places))
    spoiled = _spoil(encoded, path, is_key, data.draw(st.sampled_from(LONE_SURROGATES)))
    try:
        obj = from_json(cls, spoiled)
    except InvalidParamsError as exc:
        assert exc.code == -32602 and exc.field
        str(exc).encode()  # the error itself is writable
    else:  # the spoiled string was one the decoder ignores (an unknown key)
        json.dumps(to_json(obj), ensure_ascii=False).encode()
