"""JSON-RPC 2.0 envelopes, methods and A2A error codes (sealwire.codec)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealwire.codec import (
    BAD_REQUEST_TYPE,
    ERROR_INFO_TYPE,
    V03_ALIASES,
    A2AError,
    ContentTypeNotSupportedError,
    ErrorResponse,
    ExtendedAgentCardNotConfiguredError,
    ExtensionSupportRequiredError,
    InternalRpcError,
    InvalidAgentResponseError,
    InvalidParamsError,
    InvalidRequestError,
    JsonParseError,
    Method,
    MethodNotFoundError,
    PushNotificationNotSupportedError,
    RawResponse,
    Request,
    Response,
    RpcError,
    TaskNotCancelableError,
    TaskNotFoundError,
    UnsupportedOperationError,
    VersionNotSupportedError,
    encode,
    error_reason,
    parse_message,
    parse_request,
    parse_response,
    rpc_error_from,
)
from sealwire.errors import DecodeError
from sealwire.model import (
    AgentCapabilities,
    AgentCard,
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetExtendedAgentCardRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTaskPushNotificationConfigsResponse,
    ListTasksRequest,
    ListTasksResponse,
    Message,
    Part,
    Role,
    SendMessageRequest,
    SendMessageResponse,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskPushNotificationConfig,
    TaskState,
    TaskStatus,
)

MESSAGE = Message(message_id="m1", role=Role.USER, parts=(Part.from_text("hello"),))
TASK = Task(id="t1", context_id="c1", status=TaskStatus(TaskState.WORKING))
CARD = AgentCard(
    name="a",
    description="d",
    supported_interfaces=(),
    version="1",
    capabilities=AgentCapabilities(streaming=True),
)
HOOK = TaskPushNotificationConfig(url="https://hook", task_id="t1", id="p1")

# method -> (params, result) examples
EXAMPLES: dict[Method, tuple[Any, Any]] = {
    Method.SEND_MESSAGE: (SendMessageRequest(message=MESSAGE), SendMessageResponse(task=TASK)),
    Method.SEND_STREAMING_MESSAGE: (
        SendMessageRequest(message=MESSAGE),
        StreamResponse(message=MESSAGE),
    ),
    Method.GET_TASK: (GetTaskRequest(id="t1", history_length=0), TASK),
    Method.LIST_TASKS: (
        ListTasksRequest(context_id="c1", status=TaskState.WORKING),
        ListTasksResponse(tasks=(TASK,), total_size=1, page_size=1),
    ),
    Method.CANCEL_TASK: (CancelTaskRequest(id="t1"), TASK),
    Method.SUBSCRIBE_TO_TASK: (SubscribeToTaskRequest(id="t1"), StreamResponse(task=TASK)),
    Method.CREATE_TASK_PUSH_NOTIFICATION_CONFIG: (HOOK, HOOK),
    Method.GET_TASK_PUSH_NOTIFICATION_CONFIG: (
        GetTaskPushNotificationConfigRequest(task_id="t1", id="p1"),
        HOOK,
    ),
    Method.LIST_TASK_PUSH_NOTIFICATION_CONFIGS: (
        ListTaskPushNotificationConfigsRequest(task_id="t1"),
        ListTaskPushNotificationConfigsResponse(configs=(HOOK,)),
    ),
    Method.DELETE_TASK_PUSH_NOTIFICATION_CONFIG: (
        DeleteTaskPushNotificationConfigRequest(task_id="t1", id="p1"),
        None,
    ),
    Method.GET_EXTENDED_AGENT_CARD: (GetExtendedAgentCardRequest(), CARD),
}


def test_every_method_has_an_example() -> None:
    assert set(EXAMPLES) == set(Method)
    assert {m for m in Method if m.streaming} == {
        Method.SEND_STREAMING_MESSAGE,
        Method.SUBSCRIBE_TO_TASK,
    }


@pytest.mark.parametrize("method", list(Method), ids=[m.value for m in Method])
@pytest.mark.parametrize("request_id", ["abc-1", 7, 0])
def test_request_and_response_round_trip(method: Method, request_id: str | int) -> None:
    params, result = EXAMPLES[method]
    assert isinstance(params, method.params_class)
    request = Request(id=request_id, method=method, params=params)
    wire = json.dumps(encode(request)).encode()
    assert parse_request(wire) == request
    assert parse_message(wire) == request
    response = Response(id=request_id, result=result)
    wire = json.dumps(encode(response)).encode()
    raw = parse_message(wire)
    assert isinstance(raw, RawResponse) and raw.id == request_id
    assert parse_response(raw, method) == response
    assert parse_response(wire, method) == response


V03_NAMES = {
    "message/send": Method.SEND_MESSAGE,
    "message/stream": Method.SEND_STREAMING_MESSAGE,
    "tasks/get": Method.GET_TASK,
    "tasks/cancel": Method.CANCEL_TASK,
    "tasks/resubscribe": Method.SUBSCRIBE_TO_TASK,
    "tasks/pushNotificationConfig/set": Method.CREATE_TASK_PUSH_NOTIFICATION_CONFIG,
    "tasks/pushNotificationConfig/get": Method.GET_TASK_PUSH_NOTIFICATION_CONFIG,
    "tasks/pushNotificationConfig/list": Method.LIST_TASK_PUSH_NOTIFICATION_CONFIGS,
    "tasks/pushNotificationConfig/delete": Method.DELETE_TASK_PUSH_NOTIFICATION_CONFIG,
    "agent/getAuthenticatedExtendedCard": Method.GET_EXTENDED_AGENT_CARD,
}


@pytest.mark.parametrize(("name", "method"), list(V03_NAMES.items()))
def test_v03_aliases(name: str, method: Method) -> None:
    assert Method.from_wire(name) is method
    assert V03_ALIASES[name] is method
    params = EXAMPLES[method][0]
    wire = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": name,
        "params": encode(Request(id=1, method=method, params=params))["params"],
    }
    assert parse_request(wire).method is method


@pytest.mark.parametrize("method", list(Method))
def test_canonical_names(method: Method) -> None:
    assert Method.from_wire(method.value) is method


@pytest.mark.parametrize("name", ["sendMessage", "message/Send", "", "tasks/list", "SendMessage "])
def test_unknown_methods(name: str) -> None:
    with pytest.raises(MethodNotFoundError) as info:
        parse_request({"jsonrpc": "2.0", "id": "x", "method": name, "params": {}})
    assert info.value.code == -32601 and info.value.request_id == "x"


BAD_REQUESTS: list[tuple[Any, type[A2AError], str | None]] = [
    (b"{not json", JsonParseError, None),
    (b"\xff\xfe", JsonParseError, None),
    (
        b'{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": NaN}}',
        JsonParseError,
        None,
    ),
    (b"[1, 2]", InvalidRequestError, None),
    ({"id": 1, "method": "GetTask", "params": {"id": "t"}}, InvalidRequestError, "jsonrpc"),
    ({"jsonrpc": "1.0", "id": 1, "method": "GetTask"}, InvalidRequestError, "jsonrpc"),
    ({"jsonrpc": "2.0", "method": "GetTask", "params": {"id": "t"}}, InvalidRequestError, "id"),
    ({"jsonrpc": "2.0", "id": None, "method": "GetTask"}, InvalidRequestError, "id"),
    ({"jsonrpc": "2.0", "id": True, "method": "GetTask"}, InvalidRequestError, "id"),
    ({"jsonrpc": "2.0", "id": 1.5, "method": "GetTask"}, InvalidRequestError, "id"),
    ({"jsonrpc": "2.0", "id": [], "method": "GetTask"}, InvalidRequestError, "id"),
    ({"jsonrpc": "2.0", "id": 1, "method": 5}, InvalidRequestError, "method"),
    ({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": []}, InvalidParamsError, "params"),
    ({"jsonrpc": "2.0", "id": 1, "method": "GetTask"}, InvalidParamsError, "params.id"),
    (
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "SendMessage",
            "params": {"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": 1}]}},
        },
        InvalidParamsError,
        "params.message.parts[0].text",
    ),
]


@pytest.mark.parametrize(("data", "error", "field"), BAD_REQUESTS)
def test_bad_requests(data: Any, error: type[A2AError], field: str | None) -> None:
    with pytest.raises(error) as info:
        parse_request(data)
    assert info.value.field == field
    assert info.value.to_rpc_error().code == error.code


def test_errors_carry_the_request_id() -> None:
    with pytest.raises(InvalidParamsError) as info:
        parse_request({"jsonrpc": "2.0", "id": "r9", "method": "CancelTask", "params": {}})
    assert info.value.request_id == "r9"
    assert isinstance(info.value, DecodeError)
    answer = ErrorResponse.from_error(info.value)
    assert answer.id == "r9" and answer.error.code == -32602
    assert answer.error.message == "params.id: required field is missing"
    assert answer.error.data[1]["fieldViolations"] == [
        {"field": "params.id", "description": "required field is missing"}
    ]
    assert ErrorResponse.from_error(TaskNotFoundError(), 4).id == 4


def test_requests_check_their_params_and_id() -> None:
    with pytest.raises(TypeError, match="GetTaskRequest"):
        Request(id=1, method=Method.GET_TASK, params=CancelTaskRequest(id="t"))
    with pytest.raises(TypeError, match="id"):
        Request(id=True, method=Method.CANCEL_TASK, params=CancelTaskRequest(id="t"))


def test_missing_params_are_an_empty_object() -> None:
    request = parse_request({"jsonrpc": "2.0", "id": 3, "method": "GetExtendedAgentCard"})
    assert request.params == GetExtendedAgentCardRequest()


@pytest.mark.parametrize(
    "data",
    [
        {"jsonrpc": "2.0", "id": 1},
        {"jsonrpc": "2.0", "id": 1, "result": {}, "error": {"code": 1, "message": ""}},
        {"jsonrpc": "2.0", "result": {}},
        {"jsonrpc": "2.0", "id": 1, "error": "bad"},
        {"jsonrpc": "2.0", "id": 1, "error": {"code": "x", "message": ""}},
        {"jsonrpc": "2.0", "id": 1, "error": {"code": 1, "message": 5}},
        {"jsonrpc": "2.0", "id": 1, "result": {"id": "t"}},
        b"not json",
    ],
)
def test_bad_responses(data: Any) -> None:
    with pytest.raises(InvalidAgentResponseError) as info:
        parse_response(data, Method.GET_TASK)
    assert info.value.code == -32006


def test_result_errors_name_the_field() -> None:
    with pytest.raises(InvalidAgentResponseError) as info:
        parse_response(
            {"jsonrpc": "2.0", "id": 4, "result": {"task": {"id": 1}}}, Method.SEND_MESSAGE
        )
    assert info.value.field == "result.task.id" and info.value.request_id == 4
    with pytest.raises(InvalidAgentResponseError):
        parse_response(
            {"jsonrpc": "2.0", "id": 4, "result": {"x": 1}},
            Method.DELETE_TASK_PUSH_NOTIFICATION_CONFIG,
        )


def test_error_responses_round_trip() -> None:
    error = ErrorResponse(id=None, error=RpcError(-32001, "task not found", {"taskId": "t"}))
    wire = encode(error)
    assert wire == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32001, "message": "task not found", "data": {"taskId": "t"}},
    }
    assert parse_response(wire, Method.GET_TASK) == error
    assert parse_message(json.dumps(wire)) == error


A2A_ERRORS: list[tuple[type[A2AError], int]] = [
    (JsonParseError, -32700),
    (InvalidRequestError, -32600),
    (MethodNotFoundError, -32601),
    (InvalidParamsError, -32602),
    (InternalRpcError, -32603),
    (TaskNotFoundError, -32001),
    (TaskNotCancelableError, -32002),
    (PushNotificationNotSupportedError, -32003),
    (UnsupportedOperationError, -32004),
    (ContentTypeNotSupportedError, -32005),
    (InvalidAgentResponseError, -32006),
    (ExtendedAgentCardNotConfiguredError, -32007),
    (ExtensionSupportRequiredError, -32008),
    (VersionNotSupportedError, -32009),
]


@pytest.mark.parametrize(("cls", "code"), A2A_ERRORS)
def test_error_codes_map_both_ways(cls: type[A2AError], code: int) -> None:
    assert cls.code == code
    error = cls("it went wrong", data={"k": "1"}).to_rpc_error()
    info = {"@type": ERROR_INFO_TYPE, "reason": cls.reason, "domain": "a2a-protocol.org",
            "metadata": {"k": "1"}}  # fmt: skip
    assert error == RpcError(code, "it went wrong", [info])  # §9.5: details as a2a-sdk sends
    back = rpc_error_from(error)
    assert type(back) is cls and back.message == "it went wrong" and back.data == {"k": "1"}
    assert type(rpc_error_from(code)) is cls and error_reason(code) == cls.reason
    assert cls().message  # every class has a default message


def test_unknown_error_codes_keep_their_code() -> None:
    error = rpc_error_from(RpcError(-31999, "custom"))
    assert type(error) is A2AError and error.code == -31999 and error.reason == "UNKNOWN_ERROR"
    assert error.to_rpc_error().code == -31999 and error.to_rpc_error().message == "custom"
    assert A2AError.code == -32603  # the instance's code did not leak into the class


def test_a_named_field_travels_as_a_bad_request_violation() -> None:
    sent = InvalidParamsError("must be a string", field="message.parts[0].text").to_rpc_error()
    assert sent.message == "message.parts[0].text: must be a string"
    assert sent.data[1] == {"@type": BAD_REQUEST_TYPE, "fieldViolations": [
        {"field": "message.parts[0].text", "description": "must be a string"}]}  # fmt: skip
    back = rpc_error_from(sent)  # as a relaying sidecar re-sends it: the same error object
    assert back.field == "message.parts[0].text" and back.to_rpc_error() == sent


def test_received_details_of_any_shape_are_ignored_not_trusted() -> None:
    info = {"@type": ERROR_INFO_TYPE, "reason": "TASK_NOT_FOUND", "domain": "a2a-protocol.org"}
    other_field = {"@type": BAD_REQUEST_TYPE, "fieldViolations": [{"field": "other"}]}
    foreign = {**info, "domain": "evil.example", "metadata": {"k": "v"}}
    for data in (None, "text", 3, {"k": "v"}, [1, "x", None], [{**info, "metadata": {"k": 1}}],
                 [foreign], [other_field]):  # fmt: skip
        error = rpc_error_from(RpcError(-32001, "task not found", data))
        assert type(error) is TaskNotFoundError and error.data is None and error.field is None
    a2a = rpc_error_from(RpcError(-31000, "custom", [{**info, "reason": "MINE", "metadata": {}}]))
    assert a2a.reason == "MINE" and a2a.code == -31000


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "jsonrpc": st.sampled_from(["2.0", "1.0", 2]),
        "id": st.none() | st.integers() | st.text(max_size=4) | st.booleans(),
        "method": st.sampled_from([m.value for m in Method] + list(V03_NAMES) + ["x", 1]),
        "params": json_values,
        "result": json_values,
        "error": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(envelope=envelopes)
def test_arbitrary_envelopes_give_messages_or_a2a_errors(envelope: dict[str, Any]) -> None:
    try:
        message = parse_message(envelope)
    except A2AError as exc:
        assert isinstance(exc.code, int)
        return
    if isinstance(message, RawResponse):
        for method in Method:
            with contextlib.suppress(InvalidAgentResponseError):
                parse_response(message, method)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_arbitrary_bytes_give_requests_or_a2a_errors(data: bytes) -> None:
    with contextlib.suppress(A2AError):
        assert isinstance(parse_request(data), Request)


# Text as hostile peers send it, lone surrogates included (issue 18 item 3).
hostile_text = st.text(max_size=6) | st.builds(
    lambda head, lone, tail: head + lone + tail,
    st.text(max_size=3),
    st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"]),
    st.text(max_size=3),
)
hostile_values = st.recursive(
    st.none() | st.booleans() | st.integers() | hostile_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
    max_leaves=10,
)
hostile_messages = st.fixed_dictionaries(
    {"messageId": hostile_text, "role": st.just("ROLE_USER"),
     "parts": st.lists(st.fixed_dictionaries({"text": hostile_text}), min_size=1, max_size=2)},
    optional={"metadata": st.dictionaries(hostile_text, hostile_values, max_size=2),
              "contextId": hostile_text},
)  # fmt: skip
hostile_envelopes = st.fixed_dictionaries(
    {"jsonrpc": st.just("2.0"), "id": st.integers() | hostile_text},
    optional={
        "method": st.sampled_from(["SendMessage", "GetTask", "CancelTask"]) | hostile_text,
        "params": st.fixed_dictionaries({"message": hostile_messages})
        | st.fixed_dictionaries({"id": hostile_text})
        | hostile_values,
        "result": hostile_values,
        "error": st.fixed_dictionaries(
            {"code": st.integers(), "message": hostile_text}, optional={"data": hostile_values}
        ),
    },
)


def _writable(obj: Any) -> None:
    json.dumps(obj, ensure_ascii=False).encode()  # UnicodeEncodeError if not text


@settings(max_examples=300, deadline=None)
@given(envelope=hostile_envelopes)
def test_hostile_text_gives_a2a_errors_and_every_answer_is_writable(
    envelope: dict[str, Any],
) -> None:
    """Whatever parses, and every error answer to what does not, can be written out."""
    text = json.dumps(envelope)  # the surrogates travel as \\uXXXX escapes
    try:
        message = parse_message(text)
    except A2AError as exc:
        _writable(encode(ErrorResponse.from_error(exc, exc.request_id)))
        return
    if not isinstance(message, RawResponse):  # a raw result is typed (and checked) below
        _writable(encode(message))
        return
    for method in Method:
        with contextlib.suppress(InvalidAgentResponseError):
            _writable(encode(parse_response(message, method)))
