"""What ``grpc = true`` costs the TLS binding's endpoint, and what a gRPC call costs.

Run, pinned to one core: ``taskset -c 0 uv run python benchmarks/tls_grpc.py [--seconds 2]``

Two agents in this process, one with ``grpc = false`` (Python's ``ssl``, the agent's
Ed25519 certificate: the baseline) and one with ``grpc = true`` (pyOpenSSL, Ed25519
and ECDSA certificates, Ed25519 first), each answering ``SendMessage`` with a reply,
and external callers with a pinned Ed25519 client certificate:

* **new connection + JSON-RPC call** (httpx, Python ``ssl``, HTTP/2): handshake, one
  ``SendMessage``, close - what turning ``grpc`` on costs a client that does not use it
  (it still gets the Ed25519 certificate);
* **JSON-RPC call, kept connection** (httpx, HTTP/2): one ``SendMessage`` per call;
* **gRPC call, kept channel** (grpcio, the a2a-sdk stub): one ``SendMessage``;
* **new gRPC channel + call**: a grpcio channel per call (the ECDSA chain's handshake).

Rates are calls per second of this process's CPU time (``time.process_time``, grpcio's
own threads included), both ends counted, the cases taking turns one call at a time
(a burst of load on the shared machine falls on all alike); ratios are against the
first row of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import httpx
from a2a.types import a2a_pb2, a2a_pb2_grpc
from cryptography.hazmat.primitives import serialization

from sealwire.agent import TaskContext
from sealwire.identity import Identity
from sealwire_tls import grpc_root_pem, pem, self_signed_certificate
from sealwire_tls.testing import export_client_files, tls_agent

BODY = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {
    "messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}]}}}).encode()  # fmt: skip
HEADERS = {"Content-Type": "application/json", "A2A-Version": "1.0"}
METADATA = (("a2a-version", "1.0"),)
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]
"""A channel with connections of its own (grpc-core otherwise shares them between channels,
and a "new channel" would reuse the last one's connection)."""


async def rates(seconds: float) -> list[tuple[str, float]]:
    caller = Identity.generate()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "allowed.pem").write_bytes(pem([self_signed_certificate(caller)]))
        allowed = {"client_certificates": [str(folder / "allowed.pem")]}
        plain = tls_agent("plain", options=allowed)
        served = tls_agent("grpc", options={**allowed, "grpc": True})

        async def hello(task: TaskContext) -> None:
            await task.reply("hello")

        for agent in (plain, served):
            agent.on_message(hello)
        async with plain, served:
            for agent in (plain, served):
                agent.trust.pin(caller.public)
            contexts = {}
            for agent in (plain, served):
                sub = folder / agent.agent_id[:8]
                sub.mkdir()
                cert, key, server = export_client_files(
                    caller, sub, self_signed_certificate(agent.identity)
                )
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.load_verify_locations(cafile=str(server))
                ctx.load_cert_chain(str(cert), str(key))
                contexts[agent.agent_id] = ctx
            urls = {a.agent_id: a.card.offers[0].url or "" for a in (plain, served)}
            credentials = grpc.ssl_channel_credentials(
                root_certificates=grpc_root_pem(served.identity),
                private_key=caller.signing_key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
                certificate_chain=pem([self_signed_certificate(caller)]),
            )  # fmt: skip
            target = urlsplit(urls[served.agent_id]).netloc
            request = a2a_pb2.SendMessageRequest(
                message=a2a_pb2.Message(message_id="m", role=a2a_pb2.ROLE_USER,
                                        parts=[a2a_pb2.Part(text="hi")])
            )  # fmt: skip

            def new_connection(agent_id: str) -> Callable[[], Awaitable[None]]:
                async def call() -> None:
                    async with httpx.AsyncClient(
                        verify=contexts[agent_id], http2=True, trust_env=False
                    ) as http:
                        answer = await http.post(urls[agent_id], content=BODY, headers=HEADERS)
                    answer.raise_for_status()

                return call

            kept = {
                a.agent_id: httpx.AsyncClient(
                    verify=contexts[a.agent_id], http2=True, trust_env=False
                )
                for a in (plain, served)
            }

            def kept_connection(agent_id: str) -> Callable[[], Awaitable[None]]:
                async def call() -> None:
                    answer = await kept[agent_id].post(
                        urls[agent_id], content=BODY, headers=HEADERS
                    )
                    answer.raise_for_status()

                return call

            channel = grpc.aio.secure_channel(target, credentials, CHANNEL_OPTIONS)
            stub = a2a_pb2_grpc.A2AServiceStub(channel)

            async def grpc_kept() -> None:
                await stub.SendMessage(request, metadata=METADATA)

            async def grpc_new() -> None:
                async with grpc.aio.secure_channel(target, credentials, CHANNEL_OPTIONS) as ch:
                    await a2a_pb2_grpc.A2AServiceStub(ch).SendMessage(request, metadata=METADATA)

            cases: list[tuple[str, Callable[[], Awaitable[None]]]] = [
                ("new conn + JSON-RPC, grpc = false", new_connection(plain.agent_id)),
                ("new conn + JSON-RPC, grpc = true", new_connection(served.agent_id)),
                ("JSON-RPC, kept conn, grpc = false", kept_connection(plain.agent_id)),
                ("JSON-RPC, kept conn, grpc = true", kept_connection(served.agent_id)),
                ("gRPC, kept channel", grpc_kept),
                ("new gRPC channel + call", grpc_new),
            ]
            try:
                for _name, call in cases:  # warm up: connections, caches, first enrolment
                    await call()
                spent = [0.0] * len(cases)
                count = 0
                while min(spent) < seconds:
                    for index, (_name, call) in enumerate(cases):
                        start = time.process_time()
                        await call()
                        spent[index] += time.process_time() - start
                    count += 1
            finally:
                await channel.close()
                for http in kept.values():
                    await http.aclose()
    return [(name, count / cost) for (name, _), cost in zip(cases, spent, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="CPU seconds per case")
    args = parser.parse_args()
    rows = asyncio.run(rates(args.seconds))
    print(f"calls per CPU second (both ends, one process), {args.seconds:g} s per case\n")
    print(f"{'case':<38} {'calls/s':>8} {'x':>5}")
    base = {"new": rows[0][1], "kept": rows[2][1]}
    for name, rate in rows:
        against = base["new"] if name.startswith("new") else base["kept"]
        print(f"{name:<38} {rate:>8.0f} {rate / against:>5.2f}")
    print("\nx: against the grpc = false row of the same kind (new connection, or kept)")


if __name__ == "__main__":
    main()
