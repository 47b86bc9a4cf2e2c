"""Push notifications on the HTTPS endpoint (A2A v1.0 §3.1.7-3.1.10, §4.3.3, §13.2):
configs set over JSON-RPC, HTTP+JSON and by an unmodified a2a-sdk client, webhook
calls received by a real HTTPS receiver on loopback (allowed by the agent's policy),
their signature verified as a receiver would, SSRF refusals after resolution, retry
after the receiver was down, configs surviving a restart, and the -32003 of a policy
that forbids calling out."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a_conformance import client_context
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ports import free_port
from waiting import until

from sealwire.agent import (
    SIGNATURE_HEADER,
    TOKEN_HEADER,
    Agent,
    PushPolicy,
    TaskContext,
    verify_notification,
)
from sealwire.agent._push import (
    MAX_PUSH_QUEUE,
    PushSender,
    address_allowed,
    check_webhook_url,
    resolve_webhook,
    sign_notification,
)
from sealwire.codec import InvalidParamsError
from sealwire.errors import AuthenticationError
from sealwire.identity import Identity, verify_card
from sealwire.model import StreamResponse, TaskPushNotificationConfig, TaskState, TaskStatus
from sealwire.model import TaskStatusUpdateEvent as StatusUpdate
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


def _receiver_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (a CA for itself)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhook receiver")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "hook.pem", folder / "hook.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Receiver:
    """A webhook receiver: an HTTPS server on loopback recording each call."""

    def __init__(self, folder: Path) -> None:
        self.cert, self.key = _receiver_certificate(folder)
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


Serve = Callable[..., "asyncio.Future[Caller]"]


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


# -- webhook calls ----------------------------------------------------------------------------


async def test_updates_reach_the_webhook_signed_and_authenticated(
    serve: Callable[..., Any], receiver: Receiver
) -> None:
    caller: Caller = await serve(push=allowing(receiver))
    assert caller.agent.card.card["capabilities"]["pushNotifications"] is True
    task_id = await caller.ask()
    config = {"taskId": task_id, "id": "hook", "url": receiver.url(), "token": "per-task-token",
              "authentication": {"scheme": "Bearer", "credentials": "webhook-secret"}}  # fmt: skip
    await caller.result("CreateTaskPushNotificationConfig", config)
    done = await caller.answer(task_id)
    assert done["status"]["state"] == "TASK_STATE_COMPLETED"
    await until(lambda: "TASK_STATE_COMPLETED" in receiver.states(), "the completed push")

    # every status and artifact update, in the StreamResponse shape of a2a-sdk's proto
    from a2a.types import a2a_pb2
    from google.protobuf import json_format

    events = receiver.events()
    assert {next(iter(e)) for e in events} == {"statusUpdate", "artifactUpdate"}
    for event in events:
        parsed = json_format.ParseDict(event, a2a_pb2.StreamResponse())
        update = (
            parsed.status_update if parsed.HasField("status_update") else parsed.artifact_update
        )
        assert update.task_id == task_id
    assert any(e.get("artifactUpdate", {}).get("artifact", {}).get("parts") == [{"text": "GO"}]
               for e in events)  # fmt: skip

    # what a receiver checks: the path, the credentials (§4.3.3), the token, the signature
    card = verify_card((await caller.http.get(caller.url + "/.well-known/agent-card.json")).json())
    for path, headers, body in receiver.calls:
        assert path == "/hook"
        assert headers["content-type"] == "application/a2a+json"
        assert headers["authorization"] == "Bearer webhook-secret"
        assert headers[TOKEN_HEADER.lower()] == "per-task-token"
        header = verify_notification(
            headers[SIGNATURE_HEADER.lower()], body, card.identity, audience=receiver.url()
        )
        assert header["kid"] == card.agent_id
    assert len({verify_notification(h[SIGNATURE_HEADER.lower()], b, card.identity)["jti"]
                for _, h, b in receiver.calls}) == len(receiver.calls)  # fmt: skip


async def test_a_receiver_verifies_with_cryptography_alone(
    serve: Callable[..., Any], receiver: Receiver
) -> None:
    """The recipe of docs/push-notifications.md: the card's Ed25519 key, RFC 7515 §5.2."""
    caller: Caller = await serve(push=allowing(receiver))
    task_id = await caller.ask()
    await caller.result("CreateTaskPushNotificationConfig", {"taskId": task_id,
                                                             "url": receiver.url()})  # fmt: skip
    await caller.answer(task_id)
    await until(lambda: "TASK_STATE_COMPLETED" in receiver.states(), "the completed push")
    card = verify_card((await caller.http.get(caller.url + "/.well-known/agent-card.json")).json())
    key = card.identity.signing_key
    _, headers, body = receiver.calls[-1]
    protected, _, signature = headers[SIGNATURE_HEADER.lower()].split(".")

    def b64(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    header = json.loads(b64(protected))
    assert header["alg"] == "EdDSA" and header["kid"] == card.agent_id
    assert header["aud"] == receiver.url()
    signing_input = protected.encode() + b"." + base64.urlsafe_b64encode(body).rstrip(b"=")
    key.verify(b64(signature), signing_input)
    with pytest.raises(InvalidSignature):
        key.verify(b64(signature), signing_input + b"x")
    with pytest.raises(AuthenticationError):  # a tampered body
        verify_notification(headers[SIGNATURE_HEADER.lower()], body + b" ", card.identity)
    with pytest.raises(AuthenticationError):  # another agent's key
        verify_notification(headers[SIGNATURE_HEADER.lower()], body, Identity.generate().public)
    with pytest.raises(AuthenticationError):  # signed for another webhook
        verify_notification(headers[SIGNATURE_HEADER.lower()], body, card.identity,
                            audience="https://elsewhere.example/hook")  # fmt: skip


async def test_a_webhook_named_by_send_message_over_http_json(
    serve: Callable[..., Any], receiver: Receiver
) -> None:
    caller: Caller = await serve(push=allowing(receiver))
    message = {"messageId": "m-rest", "role": "ROLE_USER", "parts": [{"text": "rest"}]}
    webhook = {"url": receiver.url(path="/rest"), "token": "t"}
    answer = await caller.http.post(
        caller.url.rstrip("/") + "/message:send",
        json={"message": message, "configuration": {"taskPushNotificationConfig": webhook}},
    )
    assert answer.status_code == 200, answer.text
    task_id = answer.json()["task"]["id"]
    await until(lambda: "TASK_STATE_COMPLETED" in receiver.states(), "the completed push")
    assert {path for path, _, _ in receiver.calls} == {"/rest"}
    listed = await caller.http.get(
        f"{caller.url.rstrip('/')}/tasks/{task_id}/pushNotificationConfigs"
    )
    assert [c["url"] for c in listed.json()["configs"]] == [receiver.url(path="/rest")]


async def test_delivery_is_retried_after_the_receiver_was_down(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    down = Receiver(tmp_path)  # not started: its port refuses connections
    caller: Caller = await serve(push=allowing(down, retry_base=0.05, max_attempts=12))
    task_id = await caller.ask()
    await caller.result("CreateTaskPushNotificationConfig", {"taskId": task_id, "url": down.url()})
    await caller.answer(task_id)  # the task completes at once: the webhook never blocks it
    stats = caller.agent.push.stats
    await until(lambda: stats["retried"] >= 1, "a retry")
    await down.start()
    try:
        await until(lambda: "TASK_STATE_COMPLETED" in down.states(), "the push after the retry")
        await until(lambda: stats["delivered"] == stats["queued"], "every push delivered")
        assert stats["failed"] == 0 and stats["dropped"] == 0
    finally:
        await down.stop()


async def test_a_webhook_that_does_not_answer_never_holds_the_task(
    serve: Callable[..., Any], receiver: Receiver
) -> None:
    receiver.hold = asyncio.Event()
    caller: Caller = await serve(push=allowing(receiver))
    try:
        task_id = await caller.ask()
        url = receiver.url()
        await caller.result("CreateTaskPushNotificationConfig", {"taskId": task_id, "url": url})
        done = await caller.answer(task_id)  # answered while the webhook holds its calls
        assert done["status"]["state"] == "TASK_STATE_COMPLETED"
        await until(lambda: receiver.calls, "a call reaching the webhook")
        assert caller.agent.push.stats["delivered"] == 0
    finally:
        receiver.hold.set()
    stats = caller.agent.push.stats
    await until(lambda: stats["delivered"] == stats["queued"], "every push delivered")


async def test_webhook_connections_are_reused(
    serve: Callable[..., Any], receiver: Receiver
) -> None:
    """Many notifications, a few connections: the sender's pool keeps them (the
    answer is read to its end), at most one per worker."""
    from sealwire.agent._push import PUSH_WORKERS

    caller: Caller = await serve(push=allowing(receiver))
    for n in range(6):
        task_id = await caller.ask()
        url = receiver.url()
        await caller.result("CreateTaskPushNotificationConfig", {"taskId": task_id, "url": url})
        await caller.answer(task_id, f"go{n}")
    stats = caller.agent.push.stats
    await until(lambda: stats["delivered"] == stats["queued"] >= 18, "every push delivered")
    assert len(receiver.clients) <= PUSH_WORKERS < stats["delivered"]


async def test_a_retry_keeps_the_notification_id(
    serve: Callable[..., Any], receiver: Receiver
) -> None:
    """A 503 is retried; the repeat carries the same ``jti`` (a receiver de-duplicates)."""
    receiver.first_statuses = [503]
    caller: Caller = await serve(push=allowing(receiver, retry_base=0.05))
    task_id = await caller.ask()
    url = receiver.url()
    await caller.result("CreateTaskPushNotificationConfig", {"taskId": task_id, "url": url})
    await caller.answer(task_id)
    stats = caller.agent.push.stats
    await until(lambda: stats["delivered"] == stats["queued"] > 0, "every push delivered")
    assert stats["retried"] == 1
    card = caller.agent.card
    ids = [verify_notification(h[SIGNATURE_HEADER.lower()], b, card.identity)["jti"]
           for _, h, b in receiver.calls]  # fmt: skip
    assert len(set(ids)) == len(ids) - 1  # one notification came twice: the refused one
    again = [body for jti, (_, _, body) in zip(ids, receiver.calls, strict=True) if jti == ids[0]]
    assert len(again) == 2 and again[0] == again[1]


async def test_a_refusing_webhook_is_not_retried(
    serve: Callable[..., Any], receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.status = 403
    caller: Caller = await serve(push=allowing(receiver, retry_base=0.05))
    task_id = await caller.ask()
    await caller.result(
        "CreateTaskPushNotificationConfig", {"taskId": task_id, "url": receiver.url()}
    )
    await caller.answer(task_id)
    stats = caller.agent.push.stats
    await until(lambda: stats["failed"] == stats["queued"] > 0, "every push given up")
    assert len(receiver.calls) == stats["queued"] and stats["retried"] == 0
    assert "HTTP 403" in caplog.text  # reported, never swallowed
    assert "HTTP 403" in caller.agent.health()["push.delivery"]
    receiver.status = 200  # the webhook takes calls again: healthy once one arrives
    task_id = await caller.ask()
    url = receiver.url()
    await caller.result("CreateTaskPushNotificationConfig", {"taskId": task_id, "url": url})
    await caller.answer(task_id)
    await until(lambda: "push.delivery" not in caller.agent.health(), "push healthy again")
    assert "webhook-secret" not in caplog.text


# -- SSRF -------------------------------------------------------------------------------------


async def test_a_host_resolving_to_loopback_is_refused_at_delivery(
    serve: Callable[..., Any], receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A host name passes when the config is made; its addresses are checked at each call."""
    caller: Caller = await serve(push=PushPolicy(ca_file=str(receiver.cert)))
    task_id = await caller.ask()
    url = receiver.url(host="localhost")
    await caller.result("CreateTaskPushNotificationConfig", {"taskId": task_id, "url": url})
    await caller.answer(task_id)
    stats = caller.agent.push.stats
    await until(lambda: stats["refused"] == stats["queued"] > 0, "every push refused")
    assert receiver.calls == [] and stats["delivered"] == 0
    assert "resolves to a loopback, private or local address" in caplog.text


async def test_an_allowed_host_name_is_called_at_the_address_checked(
    serve: Callable[..., Any], receiver: Receiver
) -> None:
    """With loopback allowed, ``localhost`` is resolved, checked and called at that
    address, TLS verifying the certificate for the name (SNI ``localhost``)."""
    caller: Caller = await serve(push=allowing(receiver))
    task_id = await caller.ask()
    url = receiver.url(host="localhost")
    await caller.result("CreateTaskPushNotificationConfig", {"taskId": task_id, "url": url})
    await caller.answer(task_id)
    await until(lambda: "TASK_STATE_COMPLETED" in receiver.states(), "the completed push")
    assert {h["host"] for _, h, _ in receiver.calls} == {f"localhost:{receiver.port}"}


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.215.14", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.0.1", False),
        ("100.64.0.1", False),  # shared address space
        ("169.254.169.254", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("224.0.0.251", False),
        ("ff02::1", False),
        ("0.0.0.0", False),
        ("::ffff:10.0.0.1", False),
        ("not an address", False),
    ],
)
def test_addresses(address: str, allowed: bool) -> None:
    assert address_allowed(address, PushPolicy()) is allowed


def test_an_allow_list_opens_only_its_networks() -> None:
    policy = PushPolicy(allow_networks=["10.1.0.0/16"])
    assert address_allowed("10.1.2.3", policy)
    assert not address_allowed("10.2.0.1", policy)
    assert not address_allowed("127.0.0.1", policy)
    with pytest.raises(InvalidParamsError):
        check_webhook_url("http://10.1.2.3/hook", policy)  # still https only
    assert check_webhook_url("http://10.1.2.3/hook", PushPolicy(allow_http=True,
                             allow_networks=["10.1.0.0/16"])) == ("10.1.2.3", 80)  # fmt: skip


async def test_resolution_checks_every_address() -> None:
    from sealwire.agent import WebhookRefusedError

    with pytest.raises(WebhookRefusedError):
        await resolve_webhook("https://localhost/hook", PushPolicy())
    with pytest.raises(WebhookRefusedError):
        await resolve_webhook("http://93.184.215.14/hook", PushPolicy())
    resolved = await resolve_webhook(
        "https://localhost:8443/h", PushPolicy(allow_networks=LOOPBACK)
    )
    assert resolved.address in ("127.0.0.1", "::1") and resolved.port == 8443


# -- the sender's bounds ----------------------------------------------------------------------


def _update(task_id: str) -> StreamResponse:
    status = TaskStatus(state=TaskState.WORKING, timestamp="2026-01-01T00:00:00Z")
    return StreamResponse(
        status_update=StatusUpdate(task_id=task_id, context_id="c", status=status)
    )


async def test_the_queue_is_bounded_and_drops_are_counted() -> None:
    sender = PushSender(Identity.generate(), PushPolicy())  # not started: nothing drains
    config = TaskPushNotificationConfig(url="https://hooks.example/h", id="c", task_id="t")
    for _ in range(MAX_PUSH_QUEUE + 3):
        sender.notify("t", [config], _update("t"))
    assert sender.stats["queued"] == MAX_PUSH_QUEUE and sender.stats["dropped"] == 3
    await sender.close()
    assert sender.stats["dropped"] == MAX_PUSH_QUEUE + 3


async def test_a_crashed_worker_is_replaced(
    serve: Callable[..., Any], receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    caller: Caller = await serve(push=allowing(receiver))
    sender = caller.agent.push
    real = sender._deliver
    crashes = [1]

    async def crash_once(delivery: Any) -> None:
        if crashes:
            crashes.pop()
            raise RuntimeError("a bug in delivery")
        await real(delivery)

    monkeypatch.setattr(sender, "_deliver", crash_once)
    task_id = await caller.ask()
    await caller.result(
        "CreateTaskPushNotificationConfig", {"taskId": task_id, "url": receiver.url()}
    )
    await caller.answer(task_id)
    await until(lambda: sender.stats["restarts"] == 1, "the worker replaced")
    await until(lambda: "TASK_STATE_COMPLETED" in receiver.states(), "pushes after the crash")


def test_signatures_name_the_agent_and_the_webhook() -> None:
    identity = Identity.generate()
    signature = sign_notification(identity, b"{}", audience="https://h/x", now=1000, nonce="n")
    header = verify_notification(signature, b"{}", identity.public, audience="https://h/x",
                                 now=1000)  # fmt: skip
    assert header["kid"] == identity.agent_id and header["jti"] == "n"
    with pytest.raises(AuthenticationError):  # replayed long after
        verify_notification(signature, b"{}", identity.public, now=1000 + 3600)


# -- persistence and policy -------------------------------------------------------------------


async def test_configs_survive_a_restart(
    serve: Callable[..., Any], receiver: Receiver, tmp_path: Path
) -> None:
    identity, key, path = Identity.generate(), StoreKey.generate(), tmp_path / "agent.db"
    first: Caller = await serve(push=allowing(receiver), identity=identity,
                                store=SqliteStore.open(path, key))  # fmt: skip
    task_id = await first.ask()
    config = {"taskId": task_id, "id": "kept", "url": receiver.url(), "token": "t",
              "authentication": {"scheme": "Bearer", "credentials": "kept-secret"}}  # fmt: skip
    await first.result("CreateTaskPushNotificationConfig", config)
    await first.agent.stop()

    again: Caller = await serve(push=allowing(receiver), identity=identity,
                                store=SqliteStore.open(path, key))  # fmt: skip
    got = await again.result("GetTaskPushNotificationConfig", {"taskId": task_id, "id": "kept"})
    assert got["url"] == receiver.url() and got["token"] == "t"
    await again.answer(task_id)
    await until(lambda: "TASK_STATE_COMPLETED" in receiver.states(), "the push after restart")
    assert {h["authorization"] for _, h, _ in receiver.calls} == {"Bearer kept-secret"}


async def test_a_policy_forbidding_calls_out_answers_32003(serve: Callable[..., Any]) -> None:
    caller: Caller = await serve(
        push=PushPolicy(enabled=False, reason="this agent is offline-only")
    )
    assert caller.agent.card.card["capabilities"]["pushNotifications"] is False
    task_id = await caller.ask()
    for method, params in [
        ("CreateTaskPushNotificationConfig", {"taskId": task_id, "url": "https://h.example/x"}),
        ("GetTaskPushNotificationConfig", {"taskId": task_id, "id": "c"}),
        ("ListTaskPushNotificationConfigs", {"taskId": task_id}),
        ("DeleteTaskPushNotificationConfig", {"taskId": task_id, "id": "c"}),
    ]:
        error = (await caller.rpc(method, params))["error"]
        assert error["code"] == -32003 and "this agent is offline-only" in error["message"]
    message = {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "x"}]}
    webhook = {"taskPushNotificationConfig": {"url": "https://h.example/x"}}
    answer = await caller.rpc("SendMessage", {"message": message, "configuration": webhook})
    assert answer["error"]["code"] == -32003
    rest = await caller.http.get(
        f"{caller.url.rstrip('/')}/tasks/{task_id}/pushNotificationConfigs"
    )
    assert rest.status_code == 400
    (info,) = rest.json()["error"]["details"]
    assert info["reason"] == "PUSH_NOTIFICATION_NOT_SUPPORTED"
    assert "this agent is offline-only" in rest.json()["error"]["message"]


# -- an unmodified a2a-sdk client -------------------------------------------------------------


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
async def test_an_a2a_sdk_client_sets_a_config(
    serve: Callable[..., Any], receiver: Receiver, binding: str
) -> None:
    from a2a.client import ClientConfig, ClientFactory
    from a2a.client.card_resolver import parse_agent_card
    from a2a.helpers.proto_helpers import new_text_message
    from a2a.types import (
        DeleteTaskPushNotificationConfigRequest,
        GetTaskPushNotificationConfigRequest,
        ListTaskPushNotificationConfigsRequest,
        Role,
        SendMessageRequest,
        TaskState,
    )
    from a2a.types import TaskPushNotificationConfig as SdkConfig

    caller: Caller = await serve(push=allowing(receiver))
    card = (await caller.http.get(caller.url + "/.well-known/agent-card.json")).json()
    config = ClientConfig(streaming=False, httpx_client=caller.http,
                          supported_protocol_bindings=[binding])  # fmt: skip
    client = ClientFactory(config).create(parse_agent_card(card))
    ask = SendMessageRequest(message=new_text_message("ask", role=Role.ROLE_USER))
    events = [event async for event in client.send_message(ask)]
    task = next(e.task for e in events if e.HasField("task"))
    assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED

    made = await client.create_task_push_notification_config(
        SdkConfig(task_id=task.id, id="sdk", url=receiver.url(path="/sdk"), token="sdk-token")
    )
    assert made.id == "sdk" and made.url == receiver.url(path="/sdk")
    got = await client.get_task_push_notification_config(
        GetTaskPushNotificationConfigRequest(task_id=task.id, id="sdk")
    )
    assert got.token == "sdk-token"
    listed = await client.list_task_push_notification_configs(
        ListTaskPushNotificationConfigsRequest(task_id=task.id)
    )
    assert [c.id for c in listed.configs] == ["sdk"]

    follow = new_text_message(
        "go", role=Role.ROLE_USER, task_id=task.id, context_id=task.context_id
    )
    _ = [event async for event in client.send_message(SendMessageRequest(message=follow))]
    await until(lambda: "TASK_STATE_COMPLETED" in receiver.states(), "the completed push")
    assert {h[TOKEN_HEADER.lower()] for _, h, _ in receiver.calls} == {"sdk-token"}

    await client.delete_task_push_notification_config(
        DeleteTaskPushNotificationConfigRequest(task_id=task.id, id="sdk")
    )
    listed = await client.list_task_push_notification_configs(
        ListTaskPushNotificationConfigsRequest(task_id=task.id)
    )
    assert list(listed.configs) == []
    await client.close()


def test_the_policy_from_configuration() -> None:
    from sealwire.config import AgentConfig
    from sealwire.errors import ConfigurationError

    text = '[push]\nenabled = false\nreason = "air-gapped"\nallow_networks = ["10.0.0.0/8"]\n'
    config = AgentConfig.from_toml(text)
    policy = PushPolicy.from_mapping(config.push)
    assert policy.enabled is False and policy.reason == "air-gapped"
    assert address_allowed("10.9.9.9", policy)
    for bad in ("[push]\nenabled = 'no'\n", "[push]\nallow_networks = ['x']\n",
                "[push]\nmax_attempts = 0\n", "[push]\nproxy = 'x'\n"):  # fmt: skip
        with pytest.raises(ConfigurationError):
            AgentConfig.from_toml(bad)
