"""Host name lookups bounded in time and in number, that never hold up the event loop.

``loop.getaddrinfo`` runs in the loop's default executor; a lookup that hangs (a
resolver that does not answer) then holds up the loop's end, which waits for its
executor's threads (for ever in Python 3.11). Here each lookup runs in a daemon
thread of its own: at its timeout the caller gets an error and the thread is
left behind, holding one of :data:`MAX_LOOKUPS` places until it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sealwire.transport._base import TransportError

__all__ = ["MAX_LOOKUPS", "RESOLVE_TIMEOUT", "connect_first", "resolve"]

RESOLVE_TIMEOUT = 5.0
"""Seconds a name lookup may take before the caller is told it failed."""
MAX_LOOKUPS = 16
"""Name lookups under way at once (past their timeout too: a hung lookup cannot be
stopped); beyond it a lookup fails at once, as if it had timed out."""

_lookups = threading.BoundedSemaphore(MAX_LOOKUPS)

Address = tuple[socket.AddressFamily, Any]
T = TypeVar("T")


async def resolve(
    host: str,
    port: int,
    *,
    kind: socket.SocketKind = socket.SOCK_STREAM,
    timeout: float | None = None,
) -> list[Address]:
    """The addresses of ``host:port``, in the resolver's order, as ``(family,
    sockaddr)``; an IP address is returned at once, with no lookup. ``timeout``:
    seconds, :data:`RESOLVE_TIMEOUT` by default.

    :raises TransportError: the lookup failed, timed out, found no address, or
        :data:`MAX_LOOKUPS` lookups are under way already.
    """
    with contextlib.suppress(socket.gaierror, UnicodeError):
        return _addresses(socket.getaddrinfo(host, port, type=kind, flags=socket.AI_NUMERICHOST))
    try:
        infos = await asyncio.wait_for(
            _getaddrinfo(host, port, kind), RESOLVE_TIMEOUT if timeout is None else timeout
        )
    except TimeoutError:
        raise TransportError(f"resolving {host} timed out") from None
    except OSError as exc:
        raise TransportError(f"cannot resolve {host}: {exc.strerror or exc}") from None
    except UnicodeError:  # not a host name IDNA can encode (a label over 63 characters)
        raise TransportError(f"cannot resolve {host}: not a valid host name") from None
    addresses = _addresses(infos)
    if not addresses:
        raise TransportError(f"{host} has no address")
    return addresses


async def connect_first(
    addresses: list[Address], connect: Callable[[str, int, socket.AddressFamily], Awaitable[T]]
) -> T:
    """``connect(address, port, family)`` to each of :func:`resolve`'s ``addresses`` in
    turn: what the first that succeeds returns; the last one's OSError if none does."""
    failure: OSError | None = None
    for family, sockaddr in addresses:
        try:
            return await connect(sockaddr[0], sockaddr[1], family)
        except OSError as exc:
            failure = exc
    if failure is None:
        raise TransportError("no address to connect to")
    raise failure


def _addresses(infos: list[Any]) -> list[Address]:
    found: list[Address] = []
    for family, _kind, _proto, _name, sockaddr in infos:
        if (family, sockaddr) not in found:
            found.append((family, sockaddr))
    return found


async def _getaddrinfo(host: str, port: int, kind: socket.SocketKind) -> list[Any]:
    places = _lookups  # the lookup gives its place back to the bound it took it from
    if not places.acquire(blocking=False):
        raise TransportError(f"resolving {host}: {MAX_LOOKUPS} lookups under way already")
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[list[Any]] = loop.create_future()

    def settle(result: list[Any] | None, error: BaseException | None) -> None:
        if answer.done():  # timed out meanwhile
            return
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(result or [])

    def lookup() -> None:
        try:
            result: list[Any] | None = socket.getaddrinfo(host, port, type=kind)
            error: BaseException | None = None
        except Exception as exc:
            result, error = None, exc
        finally:
            places.release()
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=lookup, name="sealwire-lookup", daemon=True).start()
    return await answer
