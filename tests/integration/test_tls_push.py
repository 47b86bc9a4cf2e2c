"""Push notifications on the HTTPS endpoint (A2A v1.0 §3.1.7-3.1.10, §4.3.3, §13.2):
webhook calls received by a real HTTPS receiver on loopback (allowed by the agent's
policy), their signature verified as a receiver would, retry after the receiver was
down, and the sender's bounds. The policy and the configs: test_tls_push_policy.py."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from push_webhook import Caller, Receiver, allowing
from waiting import until

from sealwire.agent import SIGNATURE_HEADER, TOKEN_HEADER, PushPolicy, verify_notification
from sealwire.agent._push import MAX_PUSH_QUEUE, PushSender
from sealwire.agent._push_signatures import sign_notification
from sealwire.errors import AuthenticationError
from sealwire.identity import Identity, verify_card
from sealwire.model import StreamResponse, TaskPushNotificationConfig, TaskState, TaskStatus
from sealwire.model import TaskStatusUpdateEvent as StatusUpdate

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
