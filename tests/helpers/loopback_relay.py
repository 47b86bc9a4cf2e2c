"""A relay app served on loopback over a backend the test made (one it gates, counts or
fronts), where the ``relay`` fixture's would not do."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import uvicorn
from ports import free_port
from waiting import until

from sealwire.asgi import Receive, Scope, Send
from sealwire.identity import Identity
from sealwire_relay import RelayBackend, RelayLimits
from sealwire_relay._app import RelayApp
from sealwire_relay._service import RelayService

__all__ = ["serving_relay_app"]

Front = Callable[[RelayApp], Callable[[Scope, Receive, Send], Awaitable[None]]]


@contextlib.asynccontextmanager
async def serving_relay_app(
    backend: RelayBackend, front: Front | None = None
) -> AsyncIterator[tuple[str, RelayApp]]:
    """Serve a relay over the started ``backend`` (behind ``front(app)`` if given) for
    the block: its URL and app. The backend is the caller's to close."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    service = RelayService(
        backend=backend, public_url=url, limits=RelayLimits(), peers={}, clock=time.time
    )
    app = RelayApp(service, Identity.generate(), random=os.urandom)
    server = uvicorn.Server(
        uvicorn.Config(app if front is None else front(app), host="127.0.0.1", port=port,
                       lifespan="off", log_level="warning", ws="websockets-sansio",
                       timeout_graceful_shutdown=1)
    )  # fmt: skip
    serving = asyncio.create_task(server.serve())
    try:
        await until(lambda: server.started, "the relay")
        yield url, app
    finally:
        server.should_exit = True
        await serving
