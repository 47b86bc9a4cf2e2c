"""Push notifications cost the task little and are delivered: calls/s with and without a webhook.

Run: ``uv run python benchmarks/bench_push.py [--tasks N]``.

One agent (in-memory store, a handler that completes at once) serves ``N``
``SendMessage`` requests through its dispatcher, one after the other, twice in
the same run: first without a webhook (the baseline), then with each request
naming a webhook in ``configuration.taskPushNotificationConfig`` (an HTTPS
receiver on loopback, allowed by the agent's push policy). Printed: calls/s of
each run and their ratio, then how long the queue took to drain after the last
call and the webhook calls/s over the whole run (each signed, over TLS, answered
by the receiver). Everything shares one process and one event loop (the agent,
its push workers and the receiver), so the ratio is the whole cost of two webhook
calls per task on this CPU, not time the task waits: the task path only checks
the config, keeps it in the task's record and queues the notifications. The
queue holds at most ``MAX_PUSH_QUEUE`` notifications: a run longer than the
workers can keep up with drops the rest (counted, printed).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import ssl
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sealwire.agent import Agent, PushPolicy, TaskContext
from sealwire.agent._push import MAX_PUSH_QUEUE
from sealwire.binding import PeerIdentity
from sealwire.codec import Method, Request
from sealwire.identity import Identity
from sealwire.model import (
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    TaskPushNotificationConfig,
)
from sealwire.store import MemoryStore
from sealwire.transport.http import serve_http


async def _complete(task: TaskContext) -> None:
    await task.complete("done")


def _certificate(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench receiver")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
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


class _Receiver:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        self.calls += 1
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def _run(agent: Agent, peer: PeerIdentity, tasks: int, hook: str | None) -> float:
    config = None
    if hook is not None:
        webhook = TaskPushNotificationConfig(url=hook, token="bench")
        config = SendMessageConfiguration(task_push_notification_config=webhook)
    start = time.perf_counter()
    for i in range(tasks):
        message = Message(message_id=uuid.uuid4().hex, role=Role.USER, parts=(Part(text="hi"),))
        params = SendMessageRequest(message=message, configuration=config)
        async for _ in agent.dispatch(
            Request(id=i, method=Method.SEND_MESSAGE, params=params), peer
        ):
            pass
    return tasks / (time.perf_counter() - start)


async def main_async(tasks: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        cert, key = _certificate(Path(folder))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        receiver = _Receiver()
        listener = await serve_http(receiver, "https://127.0.0.1:0", ssl=context)
        policy = PushPolicy(allow_networks=["127.0.0.1/32"], ca_file=str(cert))
        agent = Agent(Identity.generate(), MemoryStore(), name="server", push=policy)
        agent.on_message(_complete)
        caller = Identity.generate()
        peer = PeerIdentity(agent_id=caller.agent_id, identity=caller.public)
        async with agent:
            baseline = await _run(agent, peer, tasks, None)
            began = time.perf_counter()
            pushed = await _run(agent, peer, tasks, listener.url + "/hook")
            ended = time.perf_counter()
            await agent.push.wait_idle()
            drained = time.perf_counter()
            stats = dict(agent.push.stats)
        await listener.close()
    print(f"{tasks} SendMessage calls, one after the other (queue bound {MAX_PUSH_QUEUE}):")
    print(f"  no webhook (baseline):    {baseline:8.0f} calls/s")
    print(
        f"  a webhook per task:       {pushed:8.0f} calls/s   {pushed / baseline:5.2f} x baseline"
    )
    print(f"  queue drained {drained - ended:6.2f} s after the last call; "
          f"{receiver.calls / (drained - began):6.0f} webhook calls/s over the run")  # fmt: skip
    print(f"  push stats: {stats}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(main_async(args.tasks))


if __name__ == "__main__":
    main()
