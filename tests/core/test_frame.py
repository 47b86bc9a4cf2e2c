"""The A2A frame: service parameters plus one JSON-RPC message (sealwire.codec)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealwire.codec import (
    A2A_EXTENSIONS,
    A2A_VERSION,
    A2A_VERSION_PARAMETER,
    MAX_SERVICE_PARAMETERS,
    A2AError,
    ErrorResponse,
    Frame,
    InvalidParamsError,
    InvalidRequestError,
    JsonParseError,
    Method,
    MethodNotFoundError,
    RawResponse,
    Request,
    Response,
    RpcError,
    ServiceParameters,
    decode_frame,
    encode_frame,
    parse_response,
)
from sealwire.errors import DecodeError
from sealwire.model import (
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)

PARAMS = {A2A_VERSION_PARAMETER: A2A_VERSION, A2A_EXTENSIONS: "urn:a, urn:b"}
MESSAGE = Message(message_id="m", role=Role.USER, parts=(Part.from_text("é✓"),))
REQUEST = Request(id="r1", method=Method.SEND_MESSAGE, params=SendMessageRequest(message=MESSAGE))
EVENT = StreamResponse(
    status_update=TaskStatusUpdateEvent(
        task_id="t", context_id="c", status=TaskStatus(TaskState.WORKING)
    )
)


def test_constants() -> None:
    assert A2A_VERSION == "1.0"
    assert (A2A_VERSION_PARAMETER, A2A_EXTENSIONS) == ("A2A-Version", "A2A-Extensions")


def test_request_frame_round_trip() -> None:
    frame = Frame(PARAMS, REQUEST)
    data = encode_frame(frame)
    assert json.loads(data) == {
        "serviceParameters": PARAMS,
        "jsonrpc": {
            "jsonrpc": "2.0",
            "id": "r1",
            "method": "SendMessage",
            "params": {
                "message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "é✓"}]}
            },
        },
    }
    assert "é✓".encode() in data  # UTF-8, not \\u escapes
    assert decode_frame(data) == frame
    assert frame.version == "1.0" and frame.extensions == ("urn:a", "urn:b")


def test_response_frames_stay_raw_until_typed() -> None:
    frame = Frame({}, Response(id="r1", result=EVENT))
    decoded = decode_frame(encode_frame(frame))
    assert isinstance(decoded.message, RawResponse)
    assert parse_response(decoded.message, Method.SEND_STREAMING_MESSAGE) == frame.message
    assert decoded.version is None and decoded.extensions == ()


def test_error_frame_round_trip() -> None:
    frame = Frame({"A2A-Version": "1.0"}, ErrorResponse(id=5, error=RpcError(-32001, "gone")))
    assert decode_frame(encode_frame(frame)) == frame


def test_raw_response_frames_can_be_relayed() -> None:
    frame = Frame({}, RawResponse(id=2, result={"id": "t"}))
    assert decode_frame(encode_frame(frame)) == frame


BAD_FRAMES: list[tuple[bytes, type[A2AError], str | None]] = [
    (b"", JsonParseError, None),
    (b"\xc3\x28", JsonParseError, None),
    (b"[]", InvalidRequestError, "frame"),
    (b'{"serviceParameters": [], "jsonrpc": {}}', InvalidRequestError, "serviceParameters"),
    (
        b'{"serviceParameters": {"A2A-Version": 1}, "jsonrpc": {}}',
        InvalidRequestError,
        "serviceParameters",
    ),
    (
        b'{"serviceParameters": {"Bad Name": "x"}, "jsonrpc": {}}',
        InvalidRequestError,
        "serviceParameters",
    ),
    (
        b'{"serviceParameters": {"X": "a\\r\\nInjected: 1"}, "jsonrpc": {}}',
        InvalidRequestError,
        "serviceParameters",
    ),
    (b'{"serviceParameters": {}}', InvalidRequestError, "jsonrpc"),
    (b'{"jsonrpc": "2.0"}', InvalidRequestError, "jsonrpc"),
    (b'{"jsonrpc": {"jsonrpc": "2.0", "id": 1, "method": "Nope"}}', MethodNotFoundError, "method"),
    (
        b'{"jsonrpc": {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {}}}',
        InvalidParamsError,
        "params.id",
    ),
]


@pytest.mark.parametrize(("data", "error", "field"), BAD_FRAMES)
def test_bad_frames(data: bytes, error: type[A2AError], field: str | None) -> None:
    with pytest.raises(error) as info:
        decode_frame(data)
    assert info.value.field == field


def test_service_parameter_names_ignore_case() -> None:
    frame = decode_frame(
        b'{"serviceParameters": {"a2a-version": "1.0", "A2A-EXTENSIONS": "u:x"},'
        b' "jsonrpc": {"jsonrpc": "2.0", "id": 1, "result": null}}'
    )
    assert frame.version == "1.0" and frame.extensions == ("u:x",)
    assert frame.service_parameters["A2A-Version"] == "1.0"
    assert list(frame.service_parameters) == ["a2a-version", "A2A-EXTENSIONS"]  # spelling kept
    assert frame.service_parameters == {"A2A-Version": "1.0", "a2a-extensions": "u:x"}
    assert frame.service_parameters != {"A2A-Version": "1.0", "a2a-extensions": "U:X"}
    assert "A2A-VERSION" in frame.service_parameters
    assert object() not in frame.service_parameters
    assert hash(ServiceParameters({"X": "1"})) == hash(ServiceParameters({"x": "1"}))
    with pytest.raises(InvalidRequestError):
        decode_frame(
            b'{"serviceParameters": {"A2A-Version": "1.0", "a2a-version": "0.3"},'
            b' "jsonrpc": {"jsonrpc": "2.0", "id": 1, "result": null}}'
        )


def test_too_many_service_parameters() -> None:
    params = {f"P{i}": "v" for i in range(MAX_SERVICE_PARAMETERS + 1)}
    data = json.dumps({"serviceParameters": params, "jsonrpc": {}}).encode()
    with pytest.raises(InvalidRequestError):
        decode_frame(data)
    with pytest.raises(ValueError, match="service parameters"):
        Frame(params, REQUEST)


def test_size_limit() -> None:
    data = encode_frame(Frame({}, REQUEST))
    assert decode_frame(data, max_size=len(data)).message == REQUEST
    with pytest.raises(DecodeError) as info:
        decode_frame(data, max_size=len(data) - 1)
    assert info.value.field == "frame"


def test_deep_nesting_is_a_decode_error() -> None:
    data = b'{"jsonrpc": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(JsonParseError):
        decode_frame(data)


def test_errors_for_requests_carry_their_id() -> None:
    data = b'{"jsonrpc": {"jsonrpc": "2.0", "id": "q", "method": "GetTask", "params": {"id": 1}}}'
    with pytest.raises(InvalidParamsError) as info:
        decode_frame(data)
    assert info.value.request_id == "q"


def test_frame_for_each_kind_of_stream_event() -> None:
    task = Task(id="t", context_id="c", status=TaskStatus(TaskState.SUBMITTED))
    for event in (StreamResponse(task=task), StreamResponse(message=MESSAGE), EVENT):
        frame = decode_frame(encode_frame(Frame({}, Response(id=1, result=event))))
        assert isinstance(frame.message, RawResponse)
        response = parse_response(frame.message, Method.SUBSCRIBE_TO_TASK)
        assert isinstance(response, Response) and response.result == event


def _fuzz(data: bytes) -> None:
    try:
        frame = decode_frame(data)
    except (DecodeError, A2AError):
        return
    assert isinstance(frame, Frame)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_give_frames_or_decode_errors(data: bytes) -> None:
    _fuzz(data)


def _mutations(base: bytes) -> st.SearchStrategy[bytes]:
    def mutate(args: tuple[int, int, int]) -> bytes:
        index, value, cut = args
        out = bytearray(base)
        out[index % len(out)] = value
        return bytes(out[: len(out) - cut])

    return st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.integers(0, 3)).map(mutate)


VALID = [
    encode_frame(Frame(PARAMS, REQUEST)),
    encode_frame(Frame({}, Response(id=1, result=EVENT))),
    encode_frame(
        Frame(
            {},
            Request(id=2, method=Method.GET_TASK, params=GetTaskRequest(id="t", history_length=2)),
        )
    ),
]


@settings(max_examples=300, deadline=None)
@given(data=st.sampled_from(VALID).flatmap(_mutations))
def test_mutated_frames_give_frames_or_decode_errors(data: bytes) -> None:
    _fuzz(data)
    frame: Any
    try:
        frame = decode_frame(data)
    except (DecodeError, A2AError):
        return
    if isinstance(frame.message, RawResponse):
        for method in Method:
            with contextlib.suppress(A2AError):
                parse_response(frame.message, method)


@settings(max_examples=50, deadline=None)
@given(data=st.sampled_from(VALID))
def test_valid_frames_fed_in_pieces_only_decode_whole(data: bytes) -> None:
    for cut in range(1, len(data)):
        with pytest.raises((DecodeError, A2AError)):
            decode_frame(data[:cut])
    assert isinstance(decode_frame(data), Frame)
