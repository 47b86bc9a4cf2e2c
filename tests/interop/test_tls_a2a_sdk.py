"""An unmodified a2a-sdk client calls a Sealwire agent over the TLS binding.

The client is a2a-sdk's own ``ClientFactory`` over an ``httpx`` client that
holds a client certificate (made from the caller's identity, pinned in the
agent's trust store) and pins the agent's certificate. It picks the standard
``JSONRPC`` interface from the agent's card and gets its task and artifacts,
unary and streamed; without the certificate it gets nothing.
"""

from __future__ import annotations

import copy
import ssl
from pathlib import Path

import httpx
import pytest
from a2a.client import ClientConfig, ClientFactory
from a2a.client.card_resolver import A2ACardResolver
from a2a.helpers.proto_helpers import new_text_message
from a2a.types import Role, SendMessageRequest
from a2a.types import TaskState as SdkTaskState

from sealwire.agent._task_run import TaskContext
from sealwire.identity import Identity
from sealwire_tls import pem, self_signed_certificate
from sealwire_tls.testing import export_client_files, tls_agent


async def handler(task: TaskContext) -> None:
    text = task.message.parts[0].text or ""
    await task.working("reading")
    await task.artifact(text.upper(), name="upper")
    await task.artifact(task.peer.agent_id, name="caller")
    await task.complete("done")


def _context(cert: Path, key: Path, server: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # the agent's own certificate is pinned as the only anchor
    ctx.load_verify_locations(cafile=str(server))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "http2"])
async def test_a2a_sdk_client_with_a_client_certificate(tmp_path: Path, http2: bool) -> None:
    caller = Identity.generate()
    allowed = tmp_path / "allowed.pem"
    allowed.write_bytes(pem([self_signed_certificate(caller)]))
    agent = tls_agent("tls-agent", options={"client_certificates": [str(allowed)]})
    agent.on_message(handler)
    async with agent:
        agent.trust.pin(caller.public)
        url = agent.card.offers[0].url
        server_cert = self_signed_certificate(agent.identity)
        cert, key, server = export_client_files(caller, tmp_path, server_cert)
        verify = _context(cert, key, server)
        async with httpx.AsyncClient(verify=verify, http2=http2, trust_env=False) as http:
            card = await A2ACardResolver(http, url).get_agent_card()
            standard = [i.protocol_binding for i in card.supported_interfaces][-2:]
            assert standard == ["JSONRPC", "HTTP+JSON"]  # the SDK's default is the first
            for streaming in (False, True):
                config = ClientConfig(streaming=streaming, httpx_client=http)
                client = ClientFactory(config).create(copy.deepcopy(card))
                message = new_text_message("hello tls", role=Role.ROLE_USER)
                events = [e async for e in client.send_message(
                    SendMessageRequest(message=message))]  # fmt: skip
                tasks = [e.task for e in events if e.HasField("task")]
                if streaming:
                    artifacts = {a.name: a.parts[0].text for e in events
                                 if e.HasField("artifact_update")
                                 for a in [e.artifact_update.artifact]}  # fmt: skip
                    final = events[-1].status_update.status.state
                else:
                    artifacts = {a.name: a.parts[0].text for a in tasks[-1].artifacts}
                    final = tasks[-1].status.state
                assert final == SdkTaskState.TASK_STATE_COMPLETED
                assert artifacts == {"upper": "HELLO TLS", "caller": caller.agent_id}
        # Without a client certificate the same SDK client is refused.
        anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        anonymous.check_hostname = False
        anonymous.load_verify_locations(cafile=str(server))
        async with httpx.AsyncClient(verify=anonymous, trust_env=False) as http:
            client = ClientFactory(ClientConfig(streaming=False, httpx_client=http)).create(
                copy.deepcopy(card)
            )
            message = new_text_message("no cert", role=Role.ROLE_USER)
            with pytest.raises(Exception, match="403"):
                _ = [e async for e in client.send_message(SendMessageRequest(message=message))]
