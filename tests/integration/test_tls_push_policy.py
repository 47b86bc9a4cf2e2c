"""Push notifications on the HTTPS endpoint: the policy and the configs (A2A v1.0
§3.1.7-3.1.10, §13.2). SSRF refusals after resolution, configs surviving a restart and
set by an unmodified a2a-sdk client, and the -32003 of a policy that forbids calling out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from push_webhook import LOOPBACK, Caller, Receiver, allowing
from waiting import until

from sealwire.agent import TOKEN_HEADER, PushPolicy
from sealwire.agent._push import address_allowed, check_webhook_url, resolve_webhook
from sealwire.codec import InvalidParamsError
from sealwire.identity import Identity
from sealwire.store import SqliteStore, StoreKey

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
