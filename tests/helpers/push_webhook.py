"""The push notification tests' parts: a webhook receiver (an HTTPS server on loopback
recording each call), an agent served on the TLS binding with a caller allowed by
certificate, and the ``receiver`` and ``serve`` fixtures (tests/integration/conftest.py)."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a_conformance import client_context
from cryptography.hazmat.primitives import serialization
from ports import free_port
from tls_certs import make_certificate

from sealwire.agent import Agent, PushPolicy, TaskContext
from sealwire.identity import Identity
from sealwire.store import SqliteStore, StoreKey
from sealwire.transport.http import serve_http
from sealwire_tls import self_signed_certificate
from sealwire_tls.testing import tls_registry

LOOPBACK = ("127.0.0.1/32", "::1/128")
"""The networks a policy must allow for a receiver on this machine."""


async def handler(task: TaskContext) -> None:
    """``ask``: input required; anything else (a follow-up too): an artifact, COMPLETED."""
    text = task.message.parts[0].text or ""
    if text == "ask":
        await task.require_input("more?")
        return
    await task.working("working")
    await task.artifact(text.upper(), name="upper")
    await task.complete("done")


# -- the webhook receiver ---------------------------------------------------------------------


class Receiver:
    """A webhook receiver: an HTTPS server on loopback recording each call."""

    def __init__(self, folder: Path) -> None:
        self.cert, self.key = make_certificate(folder, "hook", dns_names=["localhost"])
        self.port = free_port()
        self.calls: list[tuple[str, dict[str, str], bytes]] = []
        self.status = 200
        self.first_statuses: list[int] = []  # answered (in order) before ``status``
        self.clients: set[tuple[str, int]] = set()  # the connections calls came on
        self.hold: asyncio.Event | None = None  # set: calls wait for it before answering
        self._listener: Any = None

    def url(self, host: str = "127.0.0.1", path: str = "/hook") -> str:
        return f"https://{host}:{self.port}{path}"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.calls.append((scope["path"], headers, body))
        self.clients.add(tuple(scope["client"]))
        if self.hold is not None:
            await self.hold.wait()
        status = self.first_statuses.pop(0) if self.first_statuses else self.status
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def start(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        self._listener = await serve_http(self, f"https://127.0.0.1:{self.port}", ssl=context)

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.close()
            self._listener = None

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, _, body in self.calls]

    def states(self) -> list[str]:
        return [e["statusUpdate"]["status"]["state"] for e in self.events() if "statusUpdate" in e]


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[Receiver]:
    hook = Receiver(tmp_path)
    await hook.start()
    yield hook
    await hook.stop()


# -- the served agent and a caller ------------------------------------------------------------


class Caller:
    """A mutual-TLS client of the served agent speaking JSON-RPC and HTTP+JSON."""

    def __init__(self, agent: Agent, http: httpx.AsyncClient) -> None:
        self.agent, self.http = agent, http
        self.url = next(o.url for o in agent.card.offers if o.name == "tls") or ""
        self._ids = 0

    async def rpc(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._ids += 1
        body = {"jsonrpc": "2.0", "id": self._ids, "method": method, "params": params}
        answer = await self.http.post(self.url, json=body)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    async def result(self, method: str, params: dict[str, Any]) -> Any:
        answer = await self.rpc(method, params)
        assert "result" in answer, answer
        return answer["result"]

    async def ask(self) -> str:
        """A task left INPUT_REQUIRED: its id."""
        message = {"messageId": "m-ask", "role": "ROLE_USER", "parts": [{"text": "ask"}]}
        task = (await self.result("SendMessage", {"message": message}))["task"]
        assert task["status"]["state"] == "TASK_STATE_INPUT_REQUIRED"
        task_id: str = task["id"]
        return task_id

    async def answer(self, task_id: str, text: str = "go") -> dict[str, Any]:
        """The follow-up that completes the task."""
        message = {"messageId": f"m-{text}", "role": "ROLE_USER", "parts": [{"text": text}],
                   "taskId": task_id}  # fmt: skip
        task: dict[str, Any] = (await self.result("SendMessage", {"message": message}))["task"]
        return task


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``await serve(push=PushPolicy(...), store=..., identity=...)``: a started agent
    on the TLS binding and a caller allowed by certificate."""
    opened: list[Any] = []
    caller_id = Identity.generate()
    allowed = tmp_path / "caller.pem"
    allowed.write_bytes(self_signed_certificate(caller_id).public_bytes(serialization.Encoding.PEM))

    async def make(**kwargs: Any) -> Caller:
        identity = kwargs.pop("identity", None) or Identity.generate()
        store = kwargs.pop("store", None)
        https = f"https://127.0.0.1:{kwargs.pop('port', 0)}"
        agent = Agent(
            identity,
            store if store is not None else SqliteStore.open(":memory:", StoreKey.generate()),
            name="served",
            listen=[https],
            registry=tls_registry(),
            binding_options={"tls": {"client_certificates": [str(allowed)]}},
            **kwargs,
        )
        agent.on_message(handler)
        await agent.start()
        opened.append(agent)
        agent.trust.pin(caller_id.public)
        folder = tmp_path / f"client{len(opened)}"
        folder.mkdir()
        http = httpx.AsyncClient(verify=client_context(agent, caller_id, folder), trust_env=False)
        opened.append(http)
        return Caller(agent, http)

    yield make
    for thing in reversed(opened):
        if isinstance(thing, Agent):
            await thing.stop()
        else:
            await thing.aclose()


def allowing(receiver: Receiver, **extra: Any) -> PushPolicy:
    """A policy letting the agent call the loopback receiver (and trust its certificate)."""
    return PushPolicy(allow_networks=LOOPBACK, ca_file=str(receiver.cert), **extra)
