"""Push notifications (A2A v1.0 §3.1.7-3.1.10, §4.3, §13.2): webhook calls for task updates.

A caller that owns a task registers webhooks for it (``CreateTaskPushNotificationConfig``
or ``configuration.taskPushNotificationConfig`` of ``SendMessage``); the task manager
keeps them in the task's record, and every status and artifact update of the task is
POSTed to each of them as a ``StreamResponse`` (§4.3.3) by :class:`PushSender`.

What a webhook call carries (see docs/push-notifications.md for the receiver's side):

* ``Content-Type: application/a2a+json``; the body is the StreamResponse JSON;
* ``Authorization: <scheme> <credentials>`` when the config has ``authentication``
  (§4.3.3), and ``X-A2A-Notification-Token: <token>`` when it has a ``token`` (the
  header a2a-sdk's senders and receivers use);
* ``Sealwire-Notification-Signature``: a detached compact JWS (RFC 7515 Appendix F,
  ``<protected>..<signature>``) by the agent's Ed25519 key over the exact body bytes;
  the protected header holds ``alg`` ``EdDSA``, ``kid`` (the agent id, the same kid as
  the card's own signature), ``iat`` (seconds, of this attempt), ``jti`` (one per
  notification and webhook, kept across retries: receivers de-duplicate by it) and
  ``aud`` (the webhook URL). :mod:`sealwire.agent._push_signatures` signs and checks it.

Where a webhook may point (server-side request forgery, §13.2): ``https`` only unless
:attr:`PushPolicy.allow_http`; never a loopback, private, shared, link-local,
multicast, reserved or unspecified address unless a network of
:attr:`PushPolicy.allow_networks` holds it. IP literals are checked when the config is
created; host names are resolved at each delivery, every address they resolve to is
checked, and the request goes to the address checked (the connection is pinned to it,
TLS still verifying the certificate for the host name), so a DNS answer that changes
between check and use cannot redirect it. Redirects are not followed and proxies from
the environment are not used.

Delivery never blocks the task: an update is put on a bounded queue (full: the
notification is dropped, logged and counted) served by a few supervised workers (one
that dies is logged and replaced); a failed call is retried with exponential backoff
and jitter, a refused target is not. Every outcome is counted in
:attr:`PushSender.stats` and every failure logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import random
import re
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs
import httpx
from attrs import field, frozen
from attrs.validators import ge, gt, instance_of, optional

from sealwire.agent._push_signatures import SIGNATURE_HEADER, sign_notification
from sealwire.codec import InvalidParamsError, to_json
from sealwire.errors import ConfigurationError, PolicyError
from sealwire.identity import Identity
from sealwire.model import StreamResponse, TaskPushNotificationConfig
from sealwire.transport import TransportError, resolve

__all__ = [
    "MAX_PUSH_CONFIGS",
    "MAX_PUSH_QUEUE",
    "MAX_WEBHOOK_URL",
    "PUSH_MEDIA_TYPE",
    "TOKEN_HEADER",
    "PushPolicy",
    "PushSender",
    "WebhookRefusedError",
    "address_allowed",
    "check_webhook",
    "check_webhook_url",
    "resolve_webhook",
]

log = logging.getLogger(__name__)

PUSH_MEDIA_TYPE = "application/a2a+json"
"""§4.3.3: the media type of a webhook call's body."""
TOKEN_HEADER = "X-A2A-Notification-Token"
"""The header carrying the config's ``token``: a2a-sdk's spelling (its receivers read it)."""

MAX_WEBHOOK_URL = 2048
"""Characters in a webhook URL: what common HTTP stacks accept in a request line."""
MAX_PUSH_CONFIGS = 16
"""Webhooks one task may have: each update costs one call per webhook, so a caller
cannot make one update fan out without end."""
MAX_PUSH_QUEUE = 1024
"""Notifications waiting for a worker: past this one is dropped (logged, counted)
rather than memory growing while webhooks are slow."""
PUSH_WORKERS = 4
"""Concurrent webhook calls: a slow or retried webhook holds one worker, not all."""
PUSH_TIMEOUT = 10.0
"""Seconds a webhook call may take (§4.3.3 recommends 10 to 30)."""
MAX_ATTEMPTS = 6
"""Calls per notification (the first and five retries) before it is given up."""
RETRY_BASE = 0.5
"""Seconds before the first retry; each next one waits twice as long (with jitter)."""
RETRY_CAP = 30.0
"""The longest wait between two attempts, in seconds."""

MAX_WEBHOOK_ANSWER = 64 * 1024
"""Bytes of a webhook's answer read (then ignored) so its connection can be reused."""

HEALTH_COMPONENT = "push.delivery"
"""The component of :meth:`~sealwire.agent.Agent.health` push delivery reports as."""

_RETRIED_STATUSES = frozenset({408, 425, 429})
"""4xx answers worth another attempt (timeouts, too early, rate limited); other 4xx
mean the webhook refuses this call, and repeating it would not change that."""


class WebhookRefusedError(PolicyError):
    """A webhook URL this agent will not call (scheme, address): never retried."""


def _networks(values: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    if isinstance(values, str):
        raise ConfigurationError("push allow_networks must be a list of networks (CIDR)")
    try:
        return tuple(ipaddress.ip_network(v, strict=False) for v in values)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"push allow_networks: {exc}") from None


@frozen(kw_only=True)
class PushPolicy:
    """Whether, and where, this agent calls webhooks.

    ``enabled`` False: the agent does not call out; the push methods and a
    ``SendMessage`` naming a webhook answer -32003 with ``reason``.
    ``allow_networks``: networks (CIDR) a webhook may resolve into although they
    are not public (a local receiver: ``["127.0.0.1/32"]``). ``ca_file``: the CA
    certificates (PEM) webhook servers are verified against instead of the system's.
    """

    enabled: bool = field(default=True, validator=instance_of(bool))
    reason: str = field(
        default="this agent's policy forbids calling webhooks", validator=instance_of(str)
    )
    allow_http: bool = field(default=False, validator=instance_of(bool))
    allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        default=(), converter=_networks
    )
    ca_file: str | None = field(default=None, validator=optional(instance_of(str)))
    max_attempts: int = field(default=MAX_ATTEMPTS, validator=[instance_of(int), ge(1)])
    retry_base: float = field(default=RETRY_BASE, validator=[instance_of((int, float)), gt(0)])
    timeout: float = field(default=PUSH_TIMEOUT, validator=[instance_of((int, float)), gt(0)])

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> PushPolicy:
        """A policy from configuration (a TOML ``[push]`` table); unknown keys are refused."""
        names = {a.name for a in attrs.fields(cls)}
        unknown = sorted(set(table) - names)
        if unknown:
            raise ConfigurationError(f"push: unknown option(s) {', '.join(unknown)}")
        try:
            return cls(**table)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"push: {exc}") from None


def address_allowed(address: str, policy: PushPolicy) -> bool:
    """Whether a webhook may be called at ``address``: a public unicast address, or one
    inside the policy's ``allow_networks``. An IPv4-mapped IPv6 address is judged as
    the IPv4 address it carries."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    if any(ip in network for network in policy.allow_networks):
        return True
    return ip.is_global and not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def _ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


MAX_PUSH_SECRET = 4096
"""Characters of a config's token or credentials: they travel in one header line."""
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")
"""An authentication scheme: an RFC 9110 §5.6.2 token (a header name's alphabet)."""
_HEADER_VALUE = re.compile(r"[\x20-\x7e]*")
"""What a header value may hold here: visible ASCII and spaces (no CR, LF or NUL)."""


def check_webhook(config: TaskPushNotificationConfig, policy: PushPolicy, field: str = "") -> None:
    """InvalidParamsError unless ``config`` can be called: its URL (below), and a
    token and authentication that fit in header lines."""
    check_webhook_url(config.url, policy, field=f"{field}url")
    secrets = [("token", config.token)]
    if config.authentication is not None:
        if not _TOKEN.fullmatch(config.authentication.scheme):
            raise InvalidParamsError(
                "authentication.scheme must be an HTTP auth scheme (a token)",
                field=f"{field}authentication.scheme",
            )
        secrets.append(("authentication.credentials", config.authentication.credentials))
    for name, value in secrets:
        if value is not None and (
            len(value) > MAX_PUSH_SECRET or not _HEADER_VALUE.fullmatch(value)
        ):
            raise InvalidParamsError(
                f"{name} must be at most {MAX_PUSH_SECRET} printable ASCII characters",
                field=f"{field}{name}",
            )


def check_webhook_url(url: str, policy: PushPolicy, *, field: str = "url") -> tuple[str, int]:
    """The URL's (host, port) if the policy lets it be called, before resolution:
    InvalidParamsError naming ``url`` otherwise. An IP literal is checked here; a
    host name is checked by :func:`resolve_webhook` at each call."""

    def refuse(message: str) -> InvalidParamsError:
        return InvalidParamsError(message, field=field)

    if len(url) > MAX_WEBHOOK_URL:
        raise refuse(f"a webhook URL has at most {MAX_WEBHOOK_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise refuse("the webhook URL is not a URL") from None
    schemes = ("https", "http") if policy.allow_http else ("https",)
    if parts.scheme not in schemes:
        raise refuse(f"a webhook URL must be {' or '.join(schemes)}")
    if parts.username is not None or parts.password is not None:
        raise refuse("a webhook URL must not hold credentials: use authentication")
    host = parts.hostname
    if not host:
        raise refuse("a webhook URL needs a host")
    if port == 0:
        raise refuse("a webhook URL's port must not be 0")
    if _ip_literal(host) and not address_allowed(host, policy):
        raise refuse("a webhook URL must not name a loopback, private or local address")
    return host, port or (443 if parts.scheme == "https" else 80)


@frozen
class ResolvedWebhook:
    """A webhook URL with the address its call is pinned to."""

    url: str
    host: str
    port: int
    address: str


async def resolve_webhook(url: str, policy: PushPolicy) -> ResolvedWebhook:
    """Resolve the webhook's host and check every address it names; the first one is
    the address the call goes to. :class:`WebhookRefusedError` when the policy
    refuses the URL or any of its addresses; TransportError when resolution fails."""
    try:
        host, port = check_webhook_url(url, policy)
    except InvalidParamsError as exc:
        raise WebhookRefusedError(exc.message) from None
    if _ip_literal(host):
        return ResolvedWebhook(url, host, port, host)
    addresses = [str(sockaddr[0]) for _, sockaddr in await resolve(host, port)]
    for address in addresses:
        if not address_allowed(address, policy):
            raise WebhookRefusedError(
                f"webhook host {host} resolves to a loopback, private or local address"
            )
    return ResolvedWebhook(url, host, port, addresses[0])


# -- delivery ---------------------------------------------------------------------------------


@frozen
class _Delivery:
    config: TaskPushNotificationConfig = field(repr=False)
    task_id: str
    body: bytes = field(repr=False)
    nonce: str = field(factory=lambda: str(uuid.uuid4()))
    """The signature's ``jti``: one per notification, the same on each of its retries,
    so a receiver that got an attempt whose answer was lost drops the repeat."""


def _shown(url: str) -> str:
    """A webhook URL as logs show it: scheme, host and port (paths and queries may
    hold secrets)."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}"
    except ValueError:
        return "<unparseable URL>"


class PushSender:
    """Calls webhooks for task updates from a bounded queue, in supervised workers.

    :meth:`notify` never blocks or raises; :meth:`start` needs a running loop;
    :meth:`close` cancels the workers (notifications still queued are dropped and
    counted). ``stats`` counts ``queued``, ``delivered``, ``retried``, ``failed``
    (given up after the attempts, or refused by the webhook), ``refused`` (a target
    the policy refuses after resolution), ``dropped`` (queue full or closing) and
    ``restarts`` (workers replaced after a crash).
    """

    def __init__(
        self,
        identity: Identity,
        policy: PushPolicy,
        report: Callable[[str, str | None], None] | None = None,
    ) -> None:
        self.identity = identity
        self.policy = policy
        self._report = report
        """``report(component, problem)``: the agent's health (``push.delivery``
        unhealthy once a notification is given up, healthy again once one arrives)."""
        self.stats: dict[str, int] = dict.fromkeys(
            ("queued", "delivered", "retried", "failed", "refused", "dropped", "restarts"), 0
        )
        self._queue: asyncio.Queue[_Delivery] = asyncio.Queue(MAX_PUSH_QUEUE)
        self._workers: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._closing = False

    def start(self) -> None:
        """Start the workers (idempotent)."""
        if self._workers or not self.policy.enabled:
            return
        self._closing = False
        for _ in range(PUSH_WORKERS):
            self._spawn()

    def _spawn(self) -> None:
        worker = asyncio.create_task(self._work(), name="sealwire-push")
        self._workers.add(worker)
        worker.add_done_callback(self._supervise)

    def _supervise(self, worker: asyncio.Task[None]) -> None:
        self._workers.discard(worker)
        if worker.cancelled() or self._closing:
            return
        exc = worker.exception()
        log.error("a push worker died (%s): starting another", type(exc).__name__)
        self.stats["restarts"] += 1
        self._spawn()

    def notify(
        self, task_id: str, configs: Iterable[TaskPushNotificationConfig], event: StreamResponse
    ) -> None:
        """Queue ``event`` for each webhook of the task (never blocks)."""
        configs = tuple(configs)
        if not configs or not self.policy.enabled:
            return
        body = json.dumps(to_json(event), ensure_ascii=False, separators=(",", ":")).encode()
        for config in configs:
            if self._closing:
                self.stats["dropped"] += 1
                continue
            try:
                self._queue.put_nowait(_Delivery(config, task_id, body))
            except asyncio.QueueFull:
                self.stats["dropped"] += 1
                log.warning("push queue full: a notification for task %s to %s is dropped",
                            task_id, _shown(config.url))  # fmt: skip
            else:
                self.stats["queued"] += 1

    async def wait_idle(self) -> None:
        """Wait until every queued notification has been handled (delivered or not)."""
        await self._queue.join()

    async def close(self) -> None:
        self._closing = True
        workers = list(self._workers)
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
            self.stats["dropped"] += 1
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            context = ssl.create_default_context(cafile=self.policy.ca_file)
            # Headers and body go out as separate writes: without TCP_NODELAY, Nagle's
            # algorithm and the webhook's delayed ACK add ~40 ms to every call.
            nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
            transport = httpx.AsyncHTTPTransport(verify=context, socket_options=nodelay)
            self._client = httpx.AsyncClient(
                transport=transport,
                trust_env=False,  # a proxy from the environment would undo the pinning
                follow_redirects=False,  # a redirect could point anywhere
                timeout=self.policy.timeout,
            )
        return self._client

    async def _work(self) -> None:
        while True:
            delivery = await self._queue.get()
            try:
                await self._deliver(delivery)
            finally:
                self._queue.task_done()

    async def _deliver(self, delivery: _Delivery) -> None:
        shown = _shown(delivery.config.url)
        for attempt in range(max(1, self.policy.max_attempts)):
            if attempt:
                self.stats["retried"] += 1
                delay = min(RETRY_CAP, self.policy.retry_base * 2 ** (attempt - 1))
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            try:
                status = await self._post(delivery)
            except WebhookRefusedError as exc:
                self.stats["refused"] += 1
                log.warning("push for task %s to %s refused: %s", delivery.task_id, shown, exc)
                return
            except (httpx.HTTPError, OSError, ssl.SSLError, TransportError) as exc:
                problem = type(exc).__name__
            else:
                if 200 <= status < 300:
                    self.stats["delivered"] += 1
                    if self._report is not None:
                        self._report(HEALTH_COMPONENT, None)
                    return
                problem = f"HTTP {status}"
                if 400 <= status < 500 and status not in _RETRIED_STATUSES:
                    break
            log.info("push for task %s to %s failed (attempt %d): %s",
                     delivery.task_id, shown, attempt + 1, problem)  # fmt: skip
        self.stats["failed"] += 1
        log.warning("push for task %s to %s given up: %s", delivery.task_id, shown, problem)
        if self._report is not None:
            self._report(HEALTH_COMPONENT, f"a notification to {shown} was given up: {problem}")

    async def _post(self, delivery: _Delivery) -> int:
        config = delivery.config
        target = await resolve_webhook(config.url, self.policy)
        headers = {
            "content-type": PUSH_MEDIA_TYPE,
            "host": urlsplit(config.url).netloc,
            SIGNATURE_HEADER: sign_notification(
                self.identity, delivery.body, audience=config.url,
                now=int(time.time()), nonce=delivery.nonce,
            ),
        }  # fmt: skip
        if config.token:
            headers[TOKEN_HEADER] = config.token
        auth = config.authentication
        if auth is not None and auth.credentials:
            headers["authorization"] = f"{auth.scheme} {auth.credentials}"
        url = httpx.URL(config.url).copy_with(host=target.address)
        extensions = {} if _ip_literal(target.host) else {"sni_hostname": target.host}
        request = self._http().build_request(
            "POST", url, content=delivery.body, headers=headers, extensions=extensions
        )
        response = await self._http().send(request, stream=True)
        try:
            # only the status counts; a small answer is read to its end so that the
            # connection is kept for the next call (a large one: the connection is cut)
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read > MAX_WEBHOOK_ANSWER:
                    break
        except httpx.HTTPError:
            pass  # the status came: the call is answered whatever happens to the body
        finally:
            with contextlib.suppress(httpx.HTTPError):
                await response.aclose()
        return response.status_code
