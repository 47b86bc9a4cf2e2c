"""The group log pushed to many members at once: one backend read per (group, position)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sealwire.identity import Identity
from sealwire.relay import GroupLogEntry
from sealwire.relay.errors import ForbiddenError, NotFoundError
from sealwire.relay.wire import b64e
from sealwire_relay import RelayLimits
from sealwire_relay._auth import Principal
from sealwire_relay._service import RelayService
from sealwire_relay._sqlite_backend import SqliteBackend

GROUP = b"g" * 16
MEMBERS = [Identity.generate().agent_id for _ in range(20)]


class CountingBackend(SqliteBackend):
    """SQLite, counting the log reads and holding each until released."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.reads = 0
        self.release = asyncio.Event()

    async def fetch_group_log(self, group_id: bytes, after: int, limit: int) -> list[GroupLogEntry]:
        self.reads += 1
        await self.release.wait()
        return await super().fetch_group_log(group_id, after, limit)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[RelayService]:
    backend = CountingBackend(str(tmp_path / "relay.sqlite3"))
    await backend.start()
    service = RelayService(
        backend=backend, public_url="http://relay", limits=RelayLimits(), peers={}, clock=lambda: 1
    )
    yield service
    await backend.close()


async def test_members_woken_together_share_one_read(service: RelayService) -> None:
    backend = service.backend
    assert isinstance(backend, CountingBackend)
    first = Principal(MEMBERS[0])
    await service.set_group_members(first, {"group_id": b64e(GROUP), "members": MEMBERS})
    body = {"group_id": b64e(GROUP), "epoch": 0, "message": b64e(b"sealed")}
    seq = (await service.append(first, body, "application"))["seq"]
    stranger = Principal(Identity.generate().agent_id)
    reads = [asyncio.ensure_future(service.group_tail(Principal(m), GROUP, 0, 10)) for m in MEMBERS]
    refused = asyncio.ensure_future(service.group_tail(stranger, GROUP, 0, 10))
    leaving = asyncio.ensure_future(service.group_tail(Principal(MEMBERS[1]), GROUP, 0, 10))
    await asyncio.sleep(0)
    leaving.cancel()  # one reader gone mid-read stops no other
    backend.release.set()
    tails = await asyncio.gather(*reads)
    assert backend.reads == 1
    (only,) = set(tails)
    ((got_seq, text),) = only
    assert got_seq == seq and json.loads(text)["seq"] == seq
    with pytest.raises(ForbiddenError):
        await refused
    # Done reads are not kept: the next one reads the backend again.
    assert await service.group_tail(first, GROUP, seq, 10) == ()
    assert backend.reads == 2
    with pytest.raises(NotFoundError):
        await service.group_tail(first, b"other group", 0, 10)
