"""Lone surrogates (``"\\ud800"`` in JSON) are refused where text enters (issue 18, item 3).

JSON lets an unpaired ``\\uD800`` escape through, and Python keeps it as a lone
surrogate that no UTF-8 encoder writes back: before, the handler ran and then the
answer could not be sent (the HTTP connection dropped, no frame came back over a
session). Now the shared decoder refuses such a string with invalid params
(-32602, HTTP 400 on REST), naming the field; a proper pair is still text.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from testonly_binding import PlaintextChannel

from sealwire.agent import RpcConnection
from sealwire.binding import PeerIdentity
from sealwire.codec import (
    InvalidAgentResponseError,
    InvalidParamsError,
    InvalidRequestError,
    Method,
    Request,
    decode_frame,
    is_text,
    json_is_text,
    parse_request,
    parse_response,
)
from sealwire.identity import Identity, verify_card
from sealwire.model import SendMessageResponse, Task, TaskState, TaskStatus
from sealwire.transport import memory_pair
from sealwire.transport.http import A2AHttpApp, serve_http

LONE = "\\ud800"  # as a JSON escape, unpaired
PAIR = "\\ud83d\\ude00"  # an escaped pair: one emoji, which is text


def _send(message: str) -> str:
    return '{"jsonrpc":"2.0","id":5,"method":"SendMessage","params":{"message":' + message + "}}"


def _message(text: str = '"hi"', metadata: str = "{}", mid: str = '"m"') -> str:
    return (
        '{"messageId":' + mid + ',"role":"ROLE_USER","parts":[{"text":' + text + "}],"
        '"metadata":' + metadata + "}"
    )


HOSTILE = {
    "params.message.parts[0].text": _message(text=f'"a{LONE}b"'),
    "params.message.messageId": _message(mid=f'"{LONE}"'),
    "params.message.metadata": _message(metadata=f'{{"{LONE}":1}}'),
    "params.message.metadata.k[1].deep": _message(metadata=f'{{"k":[0,{{"deep":"{LONE}"}}]}}'),
}


def test_text_checks() -> None:
    assert is_text("plain") and is_text("é😀") and not is_text("a\ud800") and not is_text("\udfff")
    assert json_is_text({"a": [1, {"b": "😀"}]})
    assert not json_is_text({"a": [1, {"b": "\udc00"}]})
    assert not json_is_text([{"\ud800": 1}])


@pytest.mark.parametrize("field", sorted(HOSTILE))
def test_the_codec_refuses_them_as_invalid_params(field: str) -> None:
    with pytest.raises(InvalidParamsError) as caught:
        parse_request(_send(HOSTILE[field]))
    assert caught.value.field == field and caught.value.request_id == 5
    assert caught.value.code == -32602
    str(caught.value).encode()  # the error itself is text


def test_a_pair_is_text_and_an_unwritable_id_is_not_echoed() -> None:
    request = parse_request(_send(_message(text=f'"{PAIR}"')))
    assert request.params.message.parts[0].text == "😀"
    with pytest.raises(InvalidRequestError) as caught:
        parse_request(f'{{"jsonrpc":"2.0","id":"{LONE}","method":"GetTask","params":{{}}}}')
    assert caught.value.request_id is None


def test_frames_and_answers_refuse_them() -> None:
    frame = (
        '{"serviceParameters":{"A2A-Extensions":"' + LONE + '"},'
        '"jsonrpc":{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"t"}}}'
    )
    with pytest.raises(InvalidRequestError):
        decode_frame(frame.encode())
    result = '{"jsonrpc":"2.0","id":1,"result":{"id":"' + LONE + '","contextId":"c",'
    result += '"status":{"state":"TASK_STATE_WORKING"}}}'
    with pytest.raises(InvalidAgentResponseError):
        parse_response(result, Method.GET_TASK)
    error = '{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"' + LONE + '"}}'
    with pytest.raises(InvalidAgentResponseError):
        parse_response(error, Method.GET_TASK)


async def echo(request: Request, peer: PeerIdentity) -> AsyncIterator[Any]:
    """Echoes the text it got: an unwritable string reaching it could never be answered."""
    params = request.params
    text = params.id if request.method is Method.GET_TASK else params.message.parts[0].text
    task = Task(id=text or "t", context_id="c", status=TaskStatus(state=TaskState.WORKING))
    yield task if request.method is Method.GET_TASK else SendMessageResponse(task=task)


def _card() -> Any:
    from sealwire.agent._card import build_card

    identity = Identity.generate()
    card = build_card(identity, name="x", description="x", version="0", bindings=[],
                      listen_urls=[], relay_address=None, options={})  # fmt: skip
    return verify_card(card)


async def test_a_session_answers_invalid_params() -> None:
    """Over a session (what Noise carries): the request gets its -32602 answer."""
    a, b = memory_pair()
    server = RpcConnection(PlaintextChannel(b, _card()), echo)
    server.start()
    try:
        frame = (
            '{"serviceParameters":{},"jsonrpc":{"jsonrpc":"2.0","id":9,"method":"GetTask",'
            '"params":{"id":"' + LONE + '"}}}'
        )
        await a.send(frame.encode())
        answer = json.loads(await asyncio.wait_for(a.receive(), 10))
        assert answer["jsonrpc"]["id"] == 9
        assert answer["jsonrpc"]["error"]["code"] == -32602
    finally:
        await server.close()


async def identify(scope: Any, headers: Any) -> PeerIdentity:
    caller = Identity.generate().public
    return PeerIdentity(agent_id=caller.agent_id, identity=caller)


@pytest.fixture
async def url() -> AsyncIterator[str]:
    app = A2AHttpApp(echo, lambda: {"name": "x"}, identify, rest=True)
    async with await serve_http(app, "http://127.0.0.1:0") as listener:
        yield listener.url


def _rest_body(text: str) -> str:
    return '{"message":' + _message(text=text) + "}"


async def test_the_https_app_answers_invalid_params(url: str) -> None:
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(trust_env=False) as http:
        rpc = await http.post(url, content=_send(_message(text=f'"{LONE}"')), headers=headers)
        assert rpc.status_code == 200
        assert rpc.json()["id"] == 5 and rpc.json()["error"]["code"] == -32602
        rest = await http.post(url + "/message:send", content=_rest_body(f'"{LONE}"'),
                               headers=headers)  # fmt: skip
        assert rest.status_code == 400
        assert rest.json()["error"]["details"][0]["reason"] == "INVALID_PARAMS"
        # a surrogate encoded in the bytes (not valid UTF-8) is not JSON either
        raw = _rest_body('"X"').encode().replace(b"X", b"\xed\xa0\x80")
        encoded = await http.post(url + "/message:send", content=raw, headers=headers)
        assert encoded.status_code == 400
        fine = await http.post(url + "/message:send", content=_rest_body(f'"{PAIR}"'),
                               headers=headers)  # fmt: skip
        assert fine.status_code == 200 and fine.json()["task"]["id"] == "😀"
