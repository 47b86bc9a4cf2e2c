"""Configuration and running of a relay: ``sealwire relay serve``.

:func:`serve_relay` runs a relay until interrupted (what the CLI calls);
:func:`running_relay` runs one inside an existing event loop (tests, embedding).

A configuration file is TOML with a ``[relay]`` table::

    [relay]
    host = "127.0.0.1"
    port = 8700
    public_url = "http://127.0.0.1:8700"   # default: http(s)://host:port
    identity = "relay-identity.key"         # created (mode 0600) if missing
    tls_certificate = "cert.pem"            # both set: serve HTTPS and WSS (PEM files)
    tls_key = "key.pem"
    backend = "sqlite"                      # or "nats", or a plugin's backend

    [relay.sqlite]
    path = "relay.sqlite3"

    [relay.nats]
    servers = ["nats://127.0.0.1:4222"]

    [relay.limits]
    max_message_bytes = 262144

    [[relay.peers]]                         # federation: other relays
    relay_id = "sw1..."
    url = "http://127.0.0.1:8701"

Relative paths are resolved against the file's folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import uvicorn

from sealwire.components import RelayBackendProvider
from sealwire.errors import ConfigurationError, SealwireError
from sealwire.identity import Identity, is_agent_id
from sealwire.relay.wire import STREAM_MAX_FRAME_BYTES
from sealwire_relay._app import RelayApp
from sealwire_relay._backend import RelayBackend
from sealwire_relay._federation import Forwarder
from sealwire_relay._limits import RelayLimits
from sealwire_relay._providers import BUILTIN_RELAY_BACKENDS, open_backend
from sealwire_relay._service import RelayService
from sealwire_relay._supervisor import Supervisor

__all__ = ["PeerRelay", "RelayConfig", "RunningRelay", "running_relay", "serve_relay"]

log = logging.getLogger("sealwire.relay")

# Clients send the relay nothing over the push WebSockets but control frames, and
# stream frames (batches of envelopes) of at most STREAM_MAX_FRAME_BYTES: that
# bounds what one connection may make the server buffer.
WS_MAX_CLIENT_MESSAGE = STREAM_MAX_FRAME_BYTES
# The storage probe reads one (unused) mailbox this often: a backend outage shows
# in /v1/health within a few seconds, at the cost of one cheap read each time.
STORAGE_TASK = "storage"
STORAGE_PROBE_MAILBOX = "health:probe"
STORAGE_PROBE_SECONDS = 2.0
# A probe read not answered within this counts as a failure (a reconnecting NATS
# client may otherwise hold a request for its whole timeout).
STORAGE_PROBE_TIMEOUT = 2.0


WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
"""Listening addresses that name no host agents could dial."""


@attrs.frozen
class PeerRelay:
    """Another relay of the federation: its id (its identity's agent id) and base URL."""

    relay_id: str
    url: str


@attrs.frozen(kw_only=True)
class RelayConfig:
    """Everything a relay needs; :meth:`from_toml` reads it from a file."""

    host: str = "127.0.0.1"
    port: int = 8700
    public_url: str | None = None
    identity_path: Path = Path("relay-identity.key")
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    backend: str = "sqlite"
    backend_options: Mapping[str, Any] = attrs.field(factory=dict)
    peers: tuple[PeerRelay, ...] = ()
    limits: RelayLimits = attrs.field(factory=RelayLimits)

    @property
    def url(self) -> str:
        """The base URL agents and peers use (``public_url``, else ``http(s)://host:port``)."""
        scheme = "https" if self.tls else "http"
        return (self.public_url or f"{scheme}://{self.host}:{self.port}").rstrip("/")

    @property
    def tls(self) -> bool:
        """Whether the relay serves HTTPS and WSS itself (a certificate and key are set)."""
        return self.tls_certificate is not None and self.tls_key is not None

    @classmethod
    def from_toml(cls, path: str | Path) -> RelayConfig:
        """Read the ``[relay]`` table of a TOML file (see the module docstring)."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"cannot read relay configuration {path}: {exc}") from None
        table = data.get("relay", {})
        if not isinstance(table, dict):
            raise ConfigurationError("[relay] must be a table")
        return cls.from_mapping(table, base=path.parent)

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], *, base: Path = Path()) -> RelayConfig:
        known = {
            "host",
            "port",
            "public_url",
            "identity",
            "tls_certificate",
            "tls_key",
            "backend",
            "sqlite",
            "nats",
            "limits",
            "peers",
        }
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigurationError(f"unknown [relay] settings: {', '.join(unknown)}")
        certificate = _typed(table, "tls_certificate", str, "")
        key = _typed(table, "tls_key", str, "")
        if bool(certificate) != bool(key):
            raise ConfigurationError("tls_certificate and tls_key go together: set both or neither")
        host = _typed(table, "host", str, "127.0.0.1")
        if host in WILDCARD_HOSTS and not _typed(table, "public_url", str, ""):
            raise ConfigurationError(
                f"a relay listening on {host!r} needs public_url: the URL agents dial "
                "(their logins sign it, and the relay accepts only its own)"
            )
        backend = _typed(table, "backend", str, "sqlite")
        options = dict(_typed(table, backend, dict, {})) if backend in ("sqlite", "nats") else {}
        if backend == "sqlite":
            options["path"] = str(base / options.get("path", "relay.sqlite3"))
        return cls(
            host=host,
            port=_typed(table, "port", int, 8700),
            public_url=_typed(table, "public_url", str, "") or None,
            identity_path=base / _typed(table, "identity", str, "relay-identity.key"),
            tls_certificate=base / certificate if certificate else None,
            tls_key=base / key if key else None,
            backend=backend,
            backend_options=options,
            peers=tuple(_peer(p) for p in _typed(table, "peers", list, [])),
            limits=RelayLimits.from_mapping(_typed(table, "limits", dict, {})),
        )


def _typed(table: Mapping[str, Any], name: str, kind: type, default: Any) -> Any:
    value = table.get(name, default)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigurationError(f"relay setting {name} must be of type {kind.__name__}")
    return value


def _peer(value: object) -> PeerRelay:
    if not isinstance(value, dict) or not is_agent_id(value.get("relay_id")):
        raise ConfigurationError("each [[relay.peers]] needs a relay_id (an agent id) and a url")
    url = value.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigurationError("a peer relay's url must be http:// or https://")
    return PeerRelay(value["relay_id"], url.rstrip("/"))


def load_or_create_identity(path: Path) -> Identity:
    """The relay's identity from ``path``, created there (mode 0600) the first time."""
    try:
        return Identity.from_storage_bytes(path.read_bytes())
    except FileNotFoundError:
        pass
    identity = Identity.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(identity.private_bytes_for_storage())
        f.flush()
        os.fsync(f.fileno())
    return identity


@attrs.frozen(kw_only=True)
class RunningRelay:
    """A relay serving in this process: its URL, id and service."""

    url: str
    relay_id: str
    service: RelayService = attrs.field(repr=False)
    server: asyncio.Task[None] = attrs.field(repr=False)
    supervisor: Supervisor = attrs.field(repr=False)

    async def wait(self) -> None:
        """Until the server stops (a signal, or an error that is raised here)."""
        await asyncio.shield(self.server)


@contextlib.asynccontextmanager
async def running_relay(
    config: RelayConfig,
    *,
    identity: Identity | None = None,
    backend: RelayBackend | None = None,
    providers: Sequence[RelayBackendProvider] = BUILTIN_RELAY_BACKENDS,
    clock: Callable[[], float] = time.time,
    random: Callable[[int], bytes] = os.urandom,
) -> AsyncIterator[RunningRelay]:
    """Serve a relay in the running event loop for the duration of the block.

    The backend is ``backend`` if given, else the one ``config`` names among
    ``providers`` (the built-in ones by default).
    """
    _check_tls_files(config)
    identity = identity or load_or_create_identity(config.identity_path)
    backend = backend or open_backend(config.backend, config.backend_options, providers)
    await backend.start()
    peers = {p.relay_id: p.url for p in config.peers}
    service = RelayService(
        backend=backend, public_url=config.url, limits=config.limits, peers=peers, clock=clock
    )
    supervisor = Supervisor(service.metrics)
    app = RelayApp(
        service, identity, random=random, peer_relays=frozenset(peers), supervisor=supervisor
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            ws="websockets-sansio",
            lifespan="off",
            log_level="warning",
            access_log=False,
            ws_max_size=WS_MAX_CLIENT_MESSAGE,
            # What the relay carries is ciphertext: deflating it costs CPU and saves nothing.
            ws_per_message_deflate=False,
            timeout_graceful_shutdown=1,
            ssl_certfile=str(config.tls_certificate) if config.tls else None,
            ssl_keyfile=str(config.tls_key) if config.tls else None,
        )
    )
    serving: asyncio.Task[None] = asyncio.create_task(server.serve())
    supervisor.start(STORAGE_TASK, _storage_probe(service, supervisor))
    for rid, url in peers.items():
        supervisor.start(f"forwarder:{rid}", _forwarder(service, identity, rid, url, supervisor))
    try:
        while not server.started:
            if serving.done():
                serving.result()
                raise ConfigurationError(f"relay could not listen on {config.host}:{config.port}")
            await asyncio.sleep(0.01)
        yield RunningRelay(
            url=config.url,
            relay_id=identity.agent_id,
            service=service,
            server=serving,
            supervisor=supervisor,
        )
    finally:
        await supervisor.stop()
        server.should_exit = True
        await asyncio.gather(serving, return_exceptions=True)
        await backend.close()


def _check_tls_files(config: RelayConfig) -> None:
    """ConfigurationError now, not in the server task, if the certificate or key cannot load."""
    if config.tls_certificate is None or config.tls_key is None:
        return
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            config.tls_certificate, config.tls_key
        )
    except (OSError, ssl.SSLError) as exc:
        # The error names the files and the reason, never their contents.
        raise ConfigurationError(
            f"cannot load the relay's TLS certificate {config.tls_certificate} "
            f"and key {config.tls_key}: {type(exc).__name__}"
        ) from None


def _forwarder(
    service: RelayService, identity: Identity, peer_id: str, url: str, supervisor: Supervisor
) -> Callable[[], Awaitable[None]]:
    """A fresh forwarder (and link) for each (re)start of the peer's task."""
    name = f"forwarder:{peer_id}"

    def run() -> Awaitable[None]:
        def report(error: str | None) -> None:
            supervisor.report(name, error)

        return Forwarder(service, identity, peer_id, url, report=report).run()

    return run


def _storage_probe(service: RelayService, supervisor: Supervisor) -> Callable[[], Awaitable[None]]:
    """Read an unused mailbox every STORAGE_PROBE_SECONDS: health says when storage
    is unreachable, even on a relay without peers."""

    async def run() -> None:
        while True:
            try:
                await asyncio.wait_for(
                    service.backend.fetch(STORAGE_PROBE_MAILBOX, 1), STORAGE_PROBE_TIMEOUT
                )
            except (SealwireError, TimeoutError) as exc:
                supervisor.report(STORAGE_TASK, f"storage unreachable: {type(exc).__name__}")
            else:
                supervisor.report(STORAGE_TASK, None)
            await asyncio.sleep(STORAGE_PROBE_SECONDS)

    return run


async def _serve_forever(config: RelayConfig, providers: Sequence[RelayBackendProvider]) -> None:
    async with running_relay(config, providers=providers) as relay:
        log.warning("relay %s at %s (backend %s)", relay.relay_id, relay.url, config.backend)
        await relay.wait()


def serve_relay(
    config: RelayConfig, providers: Sequence[RelayBackendProvider] = BUILTIN_RELAY_BACKENDS
) -> int:
    """Run the relay until interrupted (SIGINT/SIGTERM); the process exit code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(config, providers))
    return 0
