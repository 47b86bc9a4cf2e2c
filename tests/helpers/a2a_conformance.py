"""The A2A v1.0 conformance suite's helpers (tests/conformance): talking JSON-RPC to one agent.

One served agent listens on Noise (``tcp://``), on the TLS binding's mutual-TLS
HTTPS endpoint (the standard ``JSONRPC`` binding) and has a mailbox on a relay
(the Signal binding); the same caller reaches it over each. Every case is a
JSON-RPC request written out by hand, sent as it is (no client-side model
checks) over the transport the test is parametrised with:

* ``https`` - POSTed to the endpoint with the caller's certificate (httpx);
* ``rest`` - the same request in the HTTP+JSON binding (§11) on that endpoint,
  its answer turned back into a JSON-RPC response (codes from the ErrorInfo
  reason): a case that cannot be said in REST (no task id, a params array) is
  skipped there;
* ``noise`` and ``mailbox`` - a Sealwire frame sent on a raw secure channel;
* ``sidecar`` - POSTed in plain HTTP to a sidecar's local endpoint for the agent
  (``/peers/<name>``), which carries it over its own agent's binding (Noise).

Answers come back as JSON-RPC response objects (a stream as the list of them),
so a case asserts the same thing whatever carried it: the bus is one.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx
import pytest

from sealwire.agent import Agent, TaskContext
from sealwire.binding import SecureChannel
from sealwire.codec import A2A_VERSION, STREAM_PARAMETER
from sealwire.identity import Identity
from sealwire_tls import self_signed_certificate
from sealwire_tls.testing import export_client_files

TRANSPORTS = ("https", "rest", "noise", "mailbox", "sidecar")
ANSWER_TIMEOUT = 20.0
"""Seconds a transport may take to answer one request on a loaded machine."""
TERMINAL = frozenset({"TASK_STATE_COMPLETED", "TASK_STATE_FAILED", "TASK_STATE_CANCELED",
                      "TASK_STATE_REJECTED"})  # fmt: skip
INTERRUPTED = frozenset({"TASK_STATE_INPUT_REQUIRED", "TASK_STATE_AUTH_REQUIRED"})
POLLS = 400
"""GetTask calls (50 ms apart) before a case gives up waiting for a task to end."""


async def handler(gate: asyncio.Event, task: TaskContext) -> None:
    """The served agent's behaviour, chosen by the first message's text:

    ``hi`` - a reply message, no task; ``ask...`` - input required; ``fail`` - the
    handler raises (FAILED); ``slow`` - waits for the test's gate, then completes;
    ``chat`` - stays open echoing follow-ups as artifacts until ``bye``; anything
    else - an artifact with the text upper-cased, then COMPLETED.
    """
    text = task.message.parts[0].text or ""
    if text == "hi":
        await task.reply("hello")
        return
    if text.startswith("ask"):
        await task.require_input("more?")
        return
    if text == "fail":
        raise RuntimeError("asked to fail")
    if text == "slow":
        await gate.wait()
    if text == "chat":
        await task.working("listening")
        while (follow := (await task.next_message()).parts[0].text or "") != "bye":
            await task.artifact(follow.upper(), name="echo")
        await task.complete("bye")
        return
    await task.working("working")
    await task.artifact(text.upper(), name="upper")
    await task.complete("done")


Parameters = dict[str, str]
"""Service parameters (§3.2.6): HTTP headers on HTTPS, the frame's on the others."""


class Carrier(Protocol):
    async def exchange(
        self, body: dict[str, Any], streaming: bool, parameters: Parameters
    ) -> list[dict[str, Any]]:
        """Send one JSON-RPC request; the JSON-RPC responses that answer it."""


class Https:
    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http, self.url = http, url

    async def exchange(
        self, body: dict[str, Any], streaming: bool, parameters: Parameters
    ) -> list[dict[str, Any]]:
        answer = await self.http.post(self.url, json=body, headers=parameters)
        assert answer.status_code == 200, answer.text  # never an HTTP refusal for A2A errors
        kind = answer.headers["content-type"]
        if not streaming:
            assert kind.startswith("application/json")
            return [answer.json()]
        assert kind.startswith("text/event-stream"), answer.text
        events = []
        for block in answer.text.split("\n\n"):
            if block.strip():
                fields = dict(line.split(": ", 1) for line in block.split("\n"))
                event = json.loads(fields["data"])
                assert (fields.get("event") == "error") == ("error" in event)
                events.append(event)
        return events


_REST_CODES = {
    "TASK_NOT_FOUND": -32001, "TASK_NOT_CANCELABLE": -32002,
    "PUSH_NOTIFICATION_NOT_SUPPORTED": -32003, "UNSUPPORTED_OPERATION": -32004,
    "CONTENT_TYPE_NOT_SUPPORTED": -32005, "INVALID_AGENT_RESPONSE": -32006,
    "EXTENDED_AGENT_CARD_NOT_CONFIGURED": -32007, "EXTENSION_SUPPORT_REQUIRED": -32008,
    "VERSION_NOT_SUPPORTED": -32009, "INVALID_REQUEST": -32600, "METHOD_NOT_FOUND": -32601,
    "INVALID_PARAMS": -32602, "INTERNAL_ERROR": -32603,
}  # fmt: skip
"""§11.6 ErrorInfo reasons -> the JSON-RPC codes of the same errors (§5.4)."""
_REST_METHODS = {
    "SendMessage", "SendStreamingMessage", "GetTask", "ListTasks", "CancelTask",
    "SubscribeToTask", "CreateTaskPushNotificationConfig", "GetTaskPushNotificationConfig",
    "ListTaskPushNotificationConfigs", "DeleteTaskPushNotificationConfig", "GetExtendedAgentCard",
}  # fmt: skip
_REST_STATUS = {-32001: 404, -32601: 404, -32006: 500, -32603: 500}
"""HTTP statuses of REST errors other than 400 (§5.4)."""


class Rest:
    """JSON-RPC requests said in the HTTP+JSON binding (§11.3), answers said back."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http, self.url = http, url.rstrip("/")

    def _route(self, method: str, params: Any) -> tuple[str, str, dict[str, Any]]:
        if not isinstance(params, dict):
            pytest.skip("REST params are an object")
        params = dict(params)
        key = "taskId" if "PushNotification" in method else "id"
        if method not in _REST_METHODS:
            pytest.skip("a method REST has no route for")
        if method in ("SendMessage", "SendStreamingMessage"):
            return "POST", "/message:send" if method == "SendMessage" else "/message:stream", params
        if method == "ListTasks":
            return "GET", "/tasks", params
        if method == "GetExtendedAgentCard":
            return "GET", "/extendedAgentCard", params
        task = params.pop(key, None)
        if not isinstance(task, str) or not task or "/" in task:
            pytest.skip("REST names the task in the path")
        base = f"/tasks/{quote(task, safe='')}"
        config = ""
        if method in ("GetTaskPushNotificationConfig", "DeleteTaskPushNotificationConfig"):
            config = quote(str(params.pop("id", "")), safe="")
            if not config:
                pytest.skip("REST names the config in the path")
        return {
            "GetTask": ("GET", base, params),
            "CancelTask": ("POST", base + ":cancel", params),
            "SubscribeToTask": ("POST", base + ":subscribe", params),
            "CreateTaskPushNotificationConfig": ("POST", base + "/pushNotificationConfigs",
                                                 params),
            "ListTaskPushNotificationConfigs": ("GET", base + "/pushNotificationConfigs", params),
            "GetTaskPushNotificationConfig": ("GET", f"{base}/pushNotificationConfigs/{config}",
                                              params),
            "DeleteTaskPushNotificationConfig": ("DELETE",
                                                 f"{base}/pushNotificationConfigs/{config}",
                                                 params),
        }.get(method) or pytest.skip(f"{method} has no REST route")  # fmt: skip

    async def exchange(
        self, body: dict[str, Any], streaming: bool, parameters: Parameters
    ) -> list[dict[str, Any]]:
        if not isinstance(body.get("method"), str) or body.get("jsonrpc") != "2.0":
            pytest.skip("a JSON-RPC envelope case")
        verb, path, params = self._route(body["method"], body.get("params", {}))
        request: dict[str, Any] = {"headers": parameters}
        if verb == "POST":
            request["json"] = params
        else:
            request["params"] = {k: json.dumps(v) if isinstance(v, bool) else v
                                 for k, v in params.items()}  # fmt: skip
        answer = await self.http.request(verb, self.url + path, **request)
        kind = answer.headers.get("content-type", "")

        def said(data: Any) -> dict[str, Any]:
            return {"jsonrpc": "2.0", "id": body["id"]} | data

        if answer.status_code != 200:
            return [said({"error": self._error(answer.status_code, answer.json())})]
        if not streaming:
            assert kind.startswith("application/a2a+json")
            return [said({"result": answer.json()})]
        assert kind.startswith("text/event-stream"), answer.text
        events = []
        for block in answer.text.split("\n\n"):
            if block.strip():
                fields = dict(line.split(": ", 1) for line in block.split("\n"))
                data = json.loads(fields["data"])
                if fields.get("event") == "error":
                    events.append(said({"error": self._error(None, data)}))
                else:
                    events.append(said({"result": data}))
        return events

    @staticmethod
    def _error(status: int | None, data: dict[str, Any]) -> dict[str, Any]:
        error = data["error"]
        (info,) = [d for d in error["details"] if d["@type"].endswith("google.rpc.ErrorInfo")]
        assert info["domain"] == "a2a-protocol.org"
        code = _REST_CODES[info["reason"]]
        assert error["code"] == _REST_STATUS.get(code, 400)
        assert status in (None, error["code"])
        return {"code": code, "message": error["message"], "data": error["details"]}


class Frames:
    """Requests as Sealwire frames on a secure channel (Noise, mailbox)."""

    def __init__(self, channel: SecureChannel) -> None:
        self.channel = channel

    async def exchange(
        self, body: dict[str, Any], streaming: bool, parameters: Parameters
    ) -> list[dict[str, Any]]:
        frame = {"serviceParameters": {"A2A-Version": A2A_VERSION, **parameters}, "jsonrpc": body}
        await self.channel.send(json.dumps(frame).encode())
        answers = []
        while True:
            raw = json.loads(await asyncio.wait_for(self.channel.receive(), ANSWER_TIMEOUT))
            answer = raw["jsonrpc"]
            if answer.get("id") != body["id"]:
                continue  # a late answer to an earlier request
            answers.append(answer)
            stream = raw["serviceParameters"].get(STREAM_PARAMETER, "end")
            if "error" in answer or stream == "end":
                return answers


class A2A:
    """One transport to the served agent, speaking JSON-RPC as written."""

    def __init__(self, name: str, agent: Agent, carrier: Carrier, gate: asyncio.Event) -> None:
        self.name = name
        self.agent = agent
        self.gate = gate
        self._carrier = carrier
        self._ids = 0

    async def call(
        self, method: str, params: Any = None, parameters: Parameters | None = None
    ) -> dict[str, Any]:
        """The JSON-RPC response to one request (params sent as given; None: none)."""
        answers = await self._exchange(method, params, False, parameters or {})
        assert len(answers) == 1
        return answers[0]

    async def stream(self, method: str, params: Any) -> list[dict[str, Any]]:
        """The JSON-RPC responses of a streaming method, in order."""
        return await self._exchange(method, params, True, {})

    async def raw(self, body: dict[str, Any]) -> dict[str, Any]:
        """The answer to a request object written whole (its ``id`` given)."""
        answers = await self._carrier.exchange(body, False, {})
        assert len(answers) == 1
        return answers[0]

    async def _exchange(
        self, method: str, params: Any, streaming: bool, parameters: Parameters
    ) -> list[dict[str, Any]]:
        self._ids += 1
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": self._ids, "method": method}
        if params is not None:
            body["params"] = params
        answers = await self._carrier.exchange(body, streaming, parameters)
        for answer in answers:
            assert answer["jsonrpc"] == "2.0" and answer["id"] == self._ids
            assert ("result" in answer) != ("error" in answer)
        return answers

    async def result(self, method: str, params: Any = None) -> Any:
        answer = await self.call(method, params)
        assert "result" in answer, answer
        return answer["result"]

    async def error(
        self, method: str, params: Any = None, parameters: Parameters | None = None
    ) -> int:
        """The error code of a request that must fail."""
        answer = await self.call(method, params, parameters)
        assert "error" in answer, answer
        assert isinstance(answer["error"]["message"], str)
        code: int = answer["error"]["code"]
        return code

    async def send(self, text: str, **extra: Any) -> dict[str, Any]:
        """SendMessage of one text message; the task it answers with."""
        configuration = extra.pop("configuration", None)
        params: dict[str, Any] = {"message": message(text, **extra)}
        if configuration is not None:
            params["configuration"] = configuration
        result = await self.result("SendMessage", params)
        task: dict[str, Any] = result["task"]
        return task

    async def settled(self, task_id: str) -> dict[str, Any]:
        """The task once GetTask shows it ended or interrupted (polled)."""
        for _ in range(POLLS):
            task: dict[str, Any] = await self.result("GetTask", {"id": task_id})
            if task["status"]["state"] in TERMINAL | INTERRUPTED:
                return task
            await asyncio.sleep(0.05)
        raise AssertionError(f"task {task_id} did not settle")


_messages = 0


def message(text: str, **extra: Any) -> dict[str, Any]:
    """A user message as proto3 JSON, with a fresh messageId."""
    global _messages
    _messages += 1
    return {"messageId": f"m{_messages}", "role": "ROLE_USER", "parts": [{"text": text}], **extra}


def client_context(agent: Agent, caller: Identity, folder: Path) -> ssl.SSLContext:
    cert, key, server_pem = export_client_files(
        caller, folder, self_signed_certificate(agent.identity)
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=server_pem)
    ctx.load_cert_chain(cert, key)
    return ctx


__all__ = ["A2A", "TERMINAL", "TRANSPORTS", "Frames", "Https", "Rest", "client_context",
           "handler", "message"]  # fmt: skip
