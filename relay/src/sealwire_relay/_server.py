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
    backend_start_seconds = 30.0            # keep trying an unreachable backend this long

    [relay.sqlite]
    path = "relay.sqlite3"

    [relay.nats]
    servers = ["nats://127.0.0.1:4222"]

    [relay.limits]
    max_message_bytes = 262144

    [[relay.peers]]                         # federation: other relays
    relay_id = "sw1..."
    url = "http://127.0.0.1:8701"

Relative paths are resolved against the file's folder. docs/relay.md lists every
key with its default and limits; unknown keys are refused with the allowed ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import ssl
import sys
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
from sealwire.logs import configure_logging
from sealwire.relay.errors import RelayUnavailable
from sealwire.relay.wire import STREAM_MAX_FRAME_BYTES
from sealwire_relay._app import RelayApp
from sealwire_relay._backend import RelayBackend
from sealwire_relay._federation import Forwarder
from sealwire_relay._limits import RelayLimits
from sealwire_relay._providers import BUILTIN_RELAY_BACKENDS, open_backend
from sealwire_relay._service import RelayService
from sealwire_relay._supervisor import Supervisor

__all__ = [
    "EXIT_CONFIGURATION",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "CannotListen",
    "PeerRelay",
    "RelayConfig",
    "RunningRelay",
    "running_relay",
    "serve_relay",
]

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


# A backend that cannot be reached when the relay starts (NATS still booting,
# a network not up yet) is tried again for this long, with backoff, before the
# relay gives up: long enough for a server started beside it by systemd or
# compose, short enough that a wrong URL is reported within a minute.
DEFAULT_BACKEND_START_SECONDS = 30.0
# No supervisor needs a relay to wait longer than an hour for its storage.
MAX_BACKEND_START_SECONDS = 3600.0
# The first retry after a failed start comes soon (a server a moment from
# listening), then the delay doubles up to the last: one log line per attempt.
BACKEND_RETRY_FIRST_SECONDS = 0.5
BACKEND_RETRY_MAX_SECONDS = 5.0
MAX_PORT = 65535  # TCP ports are 16-bit numbers; 0 asks the system for a free one

# Exit codes of ``python -m sealwire_relay`` and ``sealwire relay serve``, the
# same table as the CLI's: 0 ok, 1 failed, 2 usage, 3 unreachable (cannot listen,
# storage unreachable), 4 configuration.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_CONFIGURATION = 4
# Pending connections the kernel queues before the server accepts them (uvicorn's default).
LISTEN_BACKLOG = 2048

WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
"""Listening addresses that name no host agents could dial."""


class CannotListen(SealwireError):
    """The relay cannot listen on its address (taken, not this host's, not allowed)."""


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
    backend_start_seconds: float = DEFAULT_BACKEND_START_SECONDS

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
        """Read the ``[relay]`` table of a TOML file (see docs/relay.md for every key).

        A ConfigurationError names the file, the key and what is allowed there.
        """
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"cannot read relay configuration {path}: {exc}") from None
        table = data.get("relay", {})
        if not isinstance(table, dict):
            raise ConfigurationError(f"{path}: [relay] must be a table")
        try:
            return cls.from_mapping(table, base=path.parent)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{path}: {exc}") from None

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], *, base: Path = Path()) -> RelayConfig:
        """The configuration of a ``[relay]`` table; relative paths are resolved against
        ``base``. Unknown keys, wrong types and values out of range are refused."""
        _only(table, RELAY_KEYS, "[relay]")
        certificate = _typed(table, "tls_certificate", str, "")
        key = _typed(table, "tls_key", str, "")
        if bool(certificate) != bool(key):
            raise ConfigurationError(
                "[relay] tls_certificate and tls_key go together: set both or neither"
            )
        host = _typed(table, "host", str, "127.0.0.1")
        public_url = _typed(table, "public_url", str, "")
        if host in WILDCARD_HOSTS and not public_url:
            raise ConfigurationError(
                f"[relay] a relay listening on host {host!r} needs public_url: the URL agents "
                "dial (their logins sign it, and the relay accepts only its own)"
            )
        if public_url and not public_url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"[relay] public_url must start with http:// or https:// (got {public_url!r})"
            )
        port = _typed(table, "port", int, 8700)
        if not 0 <= port <= MAX_PORT:
            raise ConfigurationError(f"[relay] port must be in 0..{MAX_PORT} (got {port})")
        wait = _typed(table, "backend_start_seconds", (int, float), DEFAULT_BACKEND_START_SECONDS)
        if not 0 <= wait <= MAX_BACKEND_START_SECONDS:
            raise ConfigurationError(
                f"[relay] backend_start_seconds must be in 0..{MAX_BACKEND_START_SECONDS} "
                f"(got {wait})"
            )
        backend = _typed(table, "backend", str, "sqlite")
        options: dict[str, Any] = {}
        for name, allowed in BACKEND_KEYS.items():
            section = _typed(table, name, dict, {})
            _only(section, allowed, f"[relay.{name}]")
            if name == backend:
                options = dict(section)
        if backend == "sqlite":
            options["path"] = str(base / _typed(options, "path", str, "relay.sqlite3"))
        limits = _typed(table, "limits", dict, {})
        _only(limits, frozenset(f.name for f in attrs.fields(RelayLimits)), "[relay.limits]")
        return cls(
            host=host,
            port=port,
            public_url=public_url or None,
            identity_path=base / _typed(table, "identity", str, "relay-identity.key"),
            tls_certificate=base / certificate if certificate else None,
            tls_key=base / key if key else None,
            backend=backend,
            backend_options=options,
            peers=tuple(_peer(p) for p in _typed(table, "peers", list, [])),
            limits=RelayLimits.from_mapping(limits),
            backend_start_seconds=float(wait),
        )


RELAY_KEYS = frozenset(
    {
        "host",
        "port",
        "public_url",
        "identity",
        "tls_certificate",
        "tls_key",
        "backend",
        "backend_start_seconds",
        "sqlite",
        "nats",
        "limits",
        "peers",
    }
)
"""The keys of the ``[relay]`` table (docs/relay.md describes each)."""
BACKEND_KEYS: Mapping[str, frozenset[str]] = {
    "sqlite": frozenset({"path"}),
    "nats": frozenset({"servers", "prefix", "shared", "replicas"}),
}
"""The keys of each built-in backend's table, ``[relay.sqlite]`` and ``[relay.nats]``."""
PEER_KEYS = frozenset({"relay_id", "url"})


def _only(table: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigurationError(
            f"{where} has no key {', '.join(map(repr, unknown))} "
            f"(allowed: {', '.join(sorted(allowed))})"
        )


def _typed(table: Mapping[str, Any], name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = table.get(name, default)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        wanted = " or ".join(_TOML_TYPES.get(k, k.__name__) for k in kinds)
        raise ConfigurationError(f"relay setting {name} must be {wanted} (got {value!r})")
    return value


_TOML_TYPES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    dict: "a table",
    list: "an array",
    bool: "true or false",
}


def _peer(value: object) -> PeerRelay:
    if not isinstance(value, dict) or not is_agent_id(value.get("relay_id")):
        raise ConfigurationError("each [[relay.peers]] needs a relay_id (an agent id) and a url")
    _only(value, PEER_KEYS, "[[relay.peers]]")
    url = value.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigurationError("[[relay.peers]] url must start with http:// or https://")
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
    ``providers`` (the built-in ones by default). Port 0 listens on a free port,
    which the yielded relay's ``url`` names (unless ``public_url`` is set).
    """
    _check_tls_files(config)
    if identity is None:
        try:
            identity = load_or_create_identity(config.identity_path)
        except OSError as exc:
            reason = os.strerror(exc.errno).lower() if exc.errno else type(exc).__name__
            raise ConfigurationError(
                f"cannot read or create the relay's identity {config.identity_path}: {reason}"
            ) from None
    # Listen first: a taken port is reported at once, not after the backend's wait.
    sock = _listen(config.host, config.port)
    if config.port == 0:  # the system chose one: the URL names it
        config = attrs.evolve(config, port=int(sock.getsockname()[1]))
    try:
        backend = backend or open_backend(config.backend, config.backend_options, providers)
        await _start_backend(backend, config)
    except BaseException:
        sock.close()
        raise
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
            # Uvicorn's lines go through the process's logging (sealwire.logs), not a
            # configuration of its own; requests are logged by the app, one line each.
            log_config=None,
            log_level="warning",
            access_log=False,
            backlog=LISTEN_BACKLOG,
            ws_max_size=WS_MAX_CLIENT_MESSAGE,
            # What the relay carries is ciphertext: deflating it costs CPU and saves nothing.
            ws_per_message_deflate=False,
            timeout_graceful_shutdown=1,
            ssl_certfile=str(config.tls_certificate) if config.tls else None,
            ssl_keyfile=str(config.tls_key) if config.tls else None,
        )
    )
    serving: asyncio.Task[None] = asyncio.create_task(server.serve(sockets=[sock]))
    supervisor.start(STORAGE_TASK, _storage_probe(service, supervisor))
    for rid, url in peers.items():
        supervisor.start(f"forwarder:{rid}", _forwarder(service, identity, rid, url, supervisor))
    try:
        while not server.started:
            if serving.done():
                serving.result()
                raise CannotListen(f"cannot listen on {config.host}:{config.port}")
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
        sock.close()
        await backend.close()


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (uvicorn listens on it), else CannotListen
    with one line naming the address and the reason."""
    where = f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError):
        raise CannotListen(f"cannot listen on {where}: unknown host {host!r}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.set_inheritable(True)
    except OSError as exc:
        sock.close()
        reason = os.strerror(exc.errno).lower() if exc.errno else type(exc).__name__
        raise CannotListen(f"cannot listen on {where}: {reason}") from None
    return sock


async def _start_backend(backend: RelayBackend, config: RelayConfig) -> None:
    """Start ``backend``, trying again with backoff while it is unreachable, for at
    most ``config.backend_start_seconds``: one log line per failed attempt."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + config.backend_start_seconds
    delay = BACKEND_RETRY_FIRST_SECONDS
    attempt = 0
    while True:
        attempt += 1
        try:
            await backend.start()
        except RelayUnavailable as exc:
            left = deadline - loop.time()
            if left <= 0:
                raise RelayUnavailable(
                    f"relay storage ({config.backend}) unreachable after {attempt} "
                    f"attempt(s) in {config.backend_start_seconds:g} s: {exc}"
                ) from None
            wait = min(delay, left)
            log.warning(
                "relay storage (%s) unreachable, attempt %d: %s; retrying in %.1f s",
                config.backend,
                attempt,
                exc,
                wait,
            )
            await asyncio.sleep(wait)
            delay = min(delay * 2, BACKEND_RETRY_MAX_SECONDS)
        else:
            if attempt > 1:
                log.warning("relay storage (%s) reached at attempt %d", config.backend, attempt)
            return


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
    """Run the relay until interrupted (SIGINT/SIGTERM); the process exit code.

    An expected failure is one line on standard error and its code, never a
    traceback: :data:`EXIT_UNREACHABLE` when the address cannot be listened on or
    the storage stays unreachable, :data:`EXIT_CONFIGURATION` for a configuration
    the relay cannot run with (TLS files, a backend's options).
    """
    if not logging.getLogger().handlers:
        configure_logging()
    try:
        asyncio.run(_serve_forever(config, providers))
    except KeyboardInterrupt:
        return EXIT_OK
    except (CannotListen, RelayUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIGURATION
    return EXIT_OK
