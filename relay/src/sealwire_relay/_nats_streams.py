"""The NATS connection of the JetStream relay backend: its streams and the request
primitives (reads, conditional publishes, deletes) every backend operation is made of.

Stream and subject names are ``P_<KIND>`` and ``p.<kind>...`` for the configured
prefix ``P`` (see :mod:`sealwire_relay._nats_backend` for the layout).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sealwire.errors import ConfigurationError
from sealwire.relay.errors import RelayUnavailable
from sealwire_relay._limits import DEDUPE_RETENTION_SECONDS

try:
    import nats
    import nats.aio.client
    import nats.errors
    from nats.js.api import StorageType, StreamConfig
    from nats.js.errors import APIError, NoStreamResponseError, NotFoundError
except ImportError:  # pragma: no cover - the optional extra is not installed
    nats = None  # type: ignore[assignment]

__all__ = ["EXPECT", "NatsStreams", "WRONG_LAST_SEQUENCE", "nats_installed"]

log = logging.getLogger("sealwire.relay.nats")

# One attempt to open a connection to a NATS server waits at most this (a host
# that drops packets, rather than refusing); nats-py's own default.
CONNECT_TIMEOUT_SECONDS = 5
# After a drop, nats-py tries a server again every this many seconds (its default).
RECONNECT_WAIT_SECONDS = 2
WRONG_LAST_SEQUENCE = 10071  # JetStream error code: Nats-Expected-Last-Subject-Sequence failed
EXPECT = "Nats-Expected-Last-Subject-Sequence"
# JetStream error codes of a delete whose sequence is gone already.
NO_SUCH_MESSAGE = frozenset({10037, 10057})
# A JetStream API request not answered within this is a failure (nats-py's default).
API_TIMEOUT_SECONDS = 5.0
# JetStream replicates a stream at most five ways.
MAX_REPLICAS = 5
# A publish that no stream received ("no responders": a stream being created or
# moving to a new leader) stored nothing; it is sent again after these pauses.
NO_STREAM_RETRY_SECONDS = (0.05, 0.1, 0.2, 0.4, 0.8)


def nats_installed() -> bool:
    """Whether nats-py (the ``nats`` extra) can be used."""
    return nats is not None


class NatsStreams:
    """The connection to ``servers`` and the streams under ``prefix``.

    ``nc`` and ``js`` are the nats-py client and its JetStream context while
    started, None otherwise.
    """

    def __init__(self, servers: Sequence[str], *, prefix: str, replicas: int) -> None:
        if not 1 <= replicas <= MAX_REPLICAS:
            raise ConfigurationError(f"nats replicas must be 1 to {MAX_REPLICAS}")
        self._servers = list(servers)
        self._p = prefix.lower()
        self._s = prefix.upper()
        self.replicas = replicas
        self.nc: Any = None
        self.js: Any = None
        self._last_error: str | None = None  # the client's last reported error, one line

    def stream(self, kind: str) -> str:
        """The name of the stream of ``kind`` (``DIR``, ``MBOX``...): ``P_<KIND>``."""
        return f"{self._s}_{kind}"

    def subject(self, *tokens: str) -> str:
        """The subject ``p.<tokens...>`` (the prefix, lower case, first)."""
        return ".".join((self._p, *tokens))

    async def start(self) -> None:
        """Connect and create the streams: one attempt, RelayUnavailable when NATS cannot
        be reached (the relay retries, see ``backend_start_seconds``).

        The first connection is made with nats-py's fewest retries (with its
        defaults they last two minutes and each logs a traceback); once connected,
        the client reconnects by itself for ever after a drop, and the relay's
        health says so meanwhile.
        """
        if self.nc is not None:
            return
        where = ", ".join(_without_credentials(u) for u in self._servers)
        nc = nats.aio.client.Client()
        try:
            await nc.connect(
                servers=self._servers,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                # One attempt: each server tried twice in a row (nats-py's least),
                # then NoServersError; its default is 60 tries 2 s apart.
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
            )
        except (OSError, nats.errors.Error, TimeoutError) as exc:
            await _close_quietly(nc)
            # NoServersError says only that every server failed: say how the last one did.
            why = self._last_error if isinstance(exc, nats.errors.NoServersError) else None
            self._last_error = None
            raise RelayUnavailable(f"cannot reach NATS at {where}: {why or _reason(exc)}") from None
        # From now on a drop is followed by reconnection attempts without end (the
        # options nats-py reads at each drop).
        nc.options["max_reconnect_attempts"] = -1
        nc.options["reconnect_time_wait"] = RECONNECT_WAIT_SECONDS
        self.nc, self.js = nc, nc.jetstream()
        try:
            await self._add_streams()
        except (APIError, nats.errors.Error, TimeoutError) as exc:
            await self.close()
            raise RelayUnavailable(
                f"NATS at {where} refused the relay's streams: {_reason(exc)}"
            ) from None
        log.info("connected to NATS at %s", where)

    async def _on_error(self, exc: Exception) -> None:
        # nats-py reports every failed (re)connection attempt here: one line, no traceback.
        self._last_error = _reason(exc)
        log.debug("NATS client error: %s", self._last_error)

    async def _on_disconnected(self) -> None:
        if self.nc is not None:  # not a failed first attempt: a connection was lost
            log.warning("NATS connection lost; reconnecting")

    async def _on_reconnected(self) -> None:
        log.warning("NATS connection restored")

    async def _add_streams(self) -> None:
        streams = [
            ("DIR", "dir", 1, 0.0),
            ("CARD", "card", 1, 0.0),
            ("MBOX", "mb", -1, 0.0),
            ("ACKS", "ack", 1, float(DEDUPE_RETENTION_SECONDS)),
            ("GRP", "g", -1, 0.0),
        ]
        for kind, token, per_subject, max_age in streams:
            config = StreamConfig(
                name=self.stream(kind),
                subjects=[self.subject(token, ">")],
                storage=StorageType.FILE,
                max_msgs_per_subject=per_subject,
                max_age=max_age,
                allow_direct=True,  # gets served without the stream leader's API queue
                num_replicas=self.replicas,
            )
            await self.declare(config)

    async def declare(self, config: Any) -> None:
        """Create the stream of ``config`` (a nats-py ``StreamConfig``), or reconfigure it."""
        try:
            await self.js.add_stream(config)
        except APIError:
            await self.js.update_stream(config)

    async def close(self) -> None:
        nc, self.nc, self.js = self.nc, None, None  # first: a closing is no lost connection
        if nc is not None:
            await nc.close()

    @asynccontextmanager
    async def io(self) -> AsyncIterator[None]:
        """Around each operation: not started is a ConfigurationError, a failed NATS
        request is RelayUnavailable."""
        if self.js is None:
            raise ConfigurationError("relay backend not started")
        try:
            yield
        except (APIError, nats.errors.Error, TimeoutError) as exc:
            raise RelayUnavailable(f"NATS request failed: {type(exc).__name__}") from None

    async def last(self, stream: str, subject: str) -> Any:
        try:
            return await self.js.get_last_msg(stream, subject)
        except NotFoundError:
            return None

    async def last_direct(self, stream: str, subject: str) -> Any:
        """As :meth:`last`, by a direct get: served without the stream's API queue
        (about 1.5 times the rate under load)."""
        try:
            return await self.js.get_msg(stream, subject=subject, direct=True)
        except NotFoundError:
            return None

    async def next(self, stream: str, subject: str, seq: int) -> Any:
        try:
            return await self.js.get_msg(stream, seq=max(seq, 1), subject=subject, next=True)
        except NotFoundError:
            return None

    async def next_direct(self, stream: str, subject: str, seq: int) -> Any:
        """As :meth:`next`, by a direct get."""
        try:
            return await self.js.get_msg(
                stream, seq=max(seq, 1), subject=subject, next=True, direct=True
            )
        except NotFoundError:
            return None

    async def publish(
        self, subject: str, data: bytes, headers: dict[str, str] | None = None
    ) -> Any:
        """JetStream publish, sent again while no stream answers (nothing was stored)."""
        for pause in NO_STREAM_RETRY_SECONDS:
            try:
                return await self.js.publish(subject, data, headers=headers)
            except NoStreamResponseError:
                await asyncio.sleep(pause)
        return await self.js.publish(subject, data, headers=headers)

    async def put_new(
        self, subject: str, data: bytes, headers: dict[str, str] | None = None
    ) -> bool:
        """Publish unless the subject holds a message; False when it does."""
        return await self.put(subject, data, 0, headers) is not None

    async def put(
        self, subject: str, data: bytes, expect: int, headers: dict[str, str] | None = None
    ) -> int | None:
        """Publish if the subject's last sequence is ``expect``; the new sequence or None."""
        try:
            ack = await self.publish(
                subject, data, headers={EXPECT: str(expect), **(headers or {})}
            )
        except APIError as exc:
            if exc.err_code == WRONG_LAST_SEQUENCE:
                return None
            raise
        return int(ack.seq)

    async def delete(self, stream: str, seq: int) -> bool:
        """Delete one message; False when it is gone already (taken or acknowledged).

        Sent as ``no_erase``: nats-py's ``delete_msg`` asks the server to overwrite
        the message in its file first, which made an ack ~5 times slower. The relay
        stores ciphertext and public keys only (the SQLite backend does not
        overwrite either).
        """
        request = json.dumps({"seq": seq, "no_erase": True}).encode()
        reply = await self.nc.request(
            f"$JS.API.STREAM.MSG.DELETE.{stream}", request, timeout=API_TIMEOUT_SECONDS
        )
        answer = json.loads(reply.data)
        error = answer.get("error")
        if error is None:
            return bool(answer.get("success"))
        if error.get("code") == 404 or error.get("err_code") in NO_SUCH_MESSAGE:
            return False
        raise RelayUnavailable(f"NATS refused a delete: {error.get('err_code')}")

    async def take(self, stream: str, subject: str) -> Any:
        """Delete and return the first message on ``subject`` (wildcards allowed) or None."""
        seq = 1
        while True:
            msg = await self.next(stream, subject, seq)
            if msg is None:
                return None
            if await self.delete(stream, msg.seq):
                return msg
            seq = msg.seq + 1  # a concurrent fetch took it: try the next one

    async def count(self, stream: str, subject: str) -> int:
        """How many subjects matching ``subject`` hold a message in ``stream``."""
        info = await self.js.stream_info(stream, subjects_filter=subject)
        return len(info.state.subjects or {})


def _without_credentials(url: str) -> str:
    """``url`` without a ``user:password@`` part (never put in logs or errors)."""
    scheme, sep, rest = url.partition("://")
    host = rest.rpartition("@")[2]
    return f"{scheme}{sep}{host}" if sep else host


def _reason(exc: BaseException) -> str:
    """What went wrong, in one line: the exception's text, else its type's name."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _close_quietly(nc: Any) -> None:
    with contextlib.suppress(Exception):
        await nc.close()
