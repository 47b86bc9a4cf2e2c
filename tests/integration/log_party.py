"""One party of the "no secret in any log line" test (run by test_log_secrets.py, not
by pytest), logging at debug level as JSON lines on standard error.

Usage: ``python log_party.py ROLE DIR RELAY_URL`` with the store key in
$SEALWIRE_STORE_KEY; TEXTS (three words, one per exchange) in $LOG_PARTY_TEXTS.

* ``bob``: a sidecar in front of a plain a2a-sdk upstream; its agent listens on
  TCP (Noise) and reads its relay mailbox (Signal) and groups (MLS). Writes its
  identity's storage bytes to ``DIR/bob.identity`` (for the test to search the
  logs for them) and its card to ``DIR/bob.card.json``, then prints ``ready``.
* ``alice``: an agent that sends bob one request over Noise, one through the
  mailbox, one to a group it creates with bob; prints ``done`` and the answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from sealwire.agent import Agent
from sealwire.identity import Identity
from sealwire.logs import configure_logging
from sealwire.policy import Situation
from sealwire.relay import RelayClient
from sealwire.store import SqliteStore, StoreKey

# The exchanges finish in a few seconds; a bound so that a stuck one fails the test.
ANSWER_SECONDS = 60.0


def _identity(directory: Path, role: str) -> Identity:
    identity = Identity.generate()
    path = directory / f"{role}.identity"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(identity.private_bytes_for_storage())
    return identity


async def _upstream() -> tuple[str, Any, asyncio.Task[None]]:
    """A plain a2a-sdk JSON-RPC agent on loopback that answers ``hello <text>``."""
    import uvicorn
    from a2a.helpers.proto_helpers import new_task_from_user_message, new_text_part
    from a2a.server.agent_execution import AgentExecutor, RequestContext
    from a2a.server.events import EventQueue
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
    from a2a.types import AgentCapabilities, AgentCard, AgentInterface
    from starlette.applications import Starlette

    class Echo(AgentExecutor):
        async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
            assert context.message is not None
            task = context.current_task or new_task_from_user_message(context.message)
            if context.current_task is None:
                await event_queue.enqueue_event(task)
            updater = TaskUpdater(event_queue, task.id, task.context_id)
            text = f"hello {context.get_user_input()}"
            await updater.add_artifact([new_text_part(text)], name="answer")
            await updater.complete()

        async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
            raise NotImplementedError

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    card = AgentCard(
        name="bob", description="plain upstream", version="1.0",
        supported_interfaces=[AgentInterface(url=url + "/", protocol_binding="JSONRPC",
                                             protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"], default_output_modes=["text/plain"],
    )  # fmt: skip
    handler = DefaultRequestHandler(
        agent_executor=Echo(), task_store=InMemoryTaskStore(), agent_card=card
    )
    app = Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, "/")])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    return url, server, task


async def bob(directory: Path, relay_url: str) -> None:
    from sealwire.adapters import Sidecar

    # The upstream would be another process in production (any A2A server, any
    # language): its own debug lines (a2a-sdk logs whole messages) are its own log,
    # not the sidecar's.
    upstream_log = logging.getLogger("a2a")
    upstream_log.propagate = False
    upstream_log.addHandler(logging.FileHandler(directory / "upstream.log"))
    identity = _identity(directory, "bob")
    store = SqliteStore.open(str(directory / "bob.sqlite3"), StoreKey.from_env())
    relay = RelayClient(relay_url, identity)

    def make_agent(**kwargs: Any) -> Agent:
        return Agent(
            identity, store, name="bob", listen=["tcp://127.0.0.1:0"], relay=relay, **kwargs,
        )  # fmt: skip

    url, server, serving = await _upstream()
    async with Sidecar(url, make_agent) as sidecar:
        card = directory / "bob.card.json"
        card.with_suffix(".tmp").write_text(json.dumps(dict(sidecar.agent.card.card)))
        card.with_suffix(".tmp").replace(card)
        print("ready", flush=True)
        await asyncio.Event().wait()
    server.should_exit = True
    await serving


async def alice(directory: Path, relay_url: str) -> None:
    noise_text, mailbox_text, group_text = os.environ["LOG_PARTY_TEXTS"].split()
    identity = _identity(directory, "alice")
    store = SqliteStore.open(str(directory / "alice.sqlite3"), StoreKey.from_env())
    relay = RelayClient(relay_url, identity)
    agent = Agent(
        identity, store, name="alice", listen=["tcp://127.0.0.1:0"], relay=relay,
    )  # fmt: skip
    answers: list[str] = []
    async with agent:
        peer = agent.peer(json.loads((directory / "bob.card.json").read_text()))
        online = await asyncio.wait_for(agent.send_message(peer, noise_text), ANSWER_SECONDS)
        offline = await asyncio.wait_for(
            agent.send_message(peer, mailbox_text, situation=Situation(online=False)),
            ANSWER_SECONDS,
        )
        group = await agent.create_group()
        await agent.add_to_group(group, [peer])
        (reply,) = await agent.send_to_group(group, group_text, timeout=ANSWER_SECONDS)
        for task in (online, offline, reply.result):
            answers.append(json.dumps(str(task)))
        # The relay session's bearer token, a secret the test searches the logs for
        # (read from the client's private state: there is no public way, on purpose).
        token = relay._session.token or ""
        (directory / "alice.token").write_text(token)
    await relay.close()
    print("done", flush=True)
    for answer in answers:
        print(answer, flush=True)


def main() -> None:
    role, directory, relay_url = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    configure_logging("debug", "json")
    asyncio.run({"alice": alice, "bob": bob}[role](directory, relay_url))


if __name__ == "__main__":
    main()
