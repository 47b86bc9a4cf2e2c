"""The directories of the JetStream relay backend: prekey bundles and one-time
prekeys, KeyPackages (stream ``P_DIR``) and agent cards (stream ``P_CARD``).

Handing a key out is deleting its message: the server deletes a sequence once,
so of two concurrent fetches exactly one wins each key.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence

from sealwire.relay.errors import LimitExceeded
from sealwire.relay.wire import FetchedPrekeys, b64d, b64e
from sealwire_relay._nats_streams import NatsStreams

__all__ = ["CARD_PARALLEL", "NatsDirectory"]

# Card look-ups are carried out this many at a time (as acknowledgements are).
CARD_PARALLEL = 32


class NatsDirectory:
    """Prekeys, KeyPackages and cards, on ``streams``."""

    def __init__(self, streams: NatsStreams) -> None:
        self._streams = streams

    def _dir(self, *tokens: str) -> str:
        return self._streams.subject("dir", *tokens)

    def _card(self, agent_id: str) -> str:
        return self._streams.subject("card", agent_id)

    # -- prekeys ------------------------------------------------------------------------

    async def publish_prekeys(
        self,
        agent_id: str,
        binding: str,
        bundle: bytes,
        one_time: Mapping[str, Mapping[str, bytes]],
        *,
        max_per_pool: int,
        max_pools: int,
    ) -> None:
        streams, stream, b = self._streams, self._streams.stream("DIR"), b64e(binding.encode())
        async with streams.io():
            last = await streams.last(stream, self._dir("b", agent_id, b))
            pools = set(json.loads(last.data)["pools"]) if last is not None else set()
            pools |= set(one_time)
            if len(pools) > max_pools:
                raise LimitExceeded("prekeys", f"more than {max_pools} one-time prekey pools")
            for pool, keys in one_time.items():
                have = await streams.count(
                    stream, self._dir("o", agent_id, b, b64e(pool.encode()), "*")
                )
                if have + len(keys) > max_per_pool:
                    raise LimitExceeded("prekeys", f"pool {pool!r} over {max_per_pool} keys")
            for pool, keys in one_time.items():
                for kid, blob in keys.items():
                    subject = self._dir("o", agent_id, b, b64e(pool.encode()), b64e(kid.encode()))
                    await streams.put_new(subject, blob)
            record = {"bundle": b64e(bundle), "pools": sorted(pools)}
            await streams.publish(self._dir("b", agent_id, b), json.dumps(record).encode())

    async def fetch_prekeys(self, agent_id: str, binding: str) -> FetchedPrekeys | None:
        streams, stream, b = self._streams, self._streams.stream("DIR"), b64e(binding.encode())
        async with streams.io():
            last = await streams.last(stream, self._dir("b", agent_id, b))
            if last is None:
                return None
            record = json.loads(last.data)
            taken: dict[str, tuple[str, bytes] | None] = {}
            for pool in record["pools"]:
                msg = await streams.take(
                    stream, self._dir("o", agent_id, b, b64e(pool.encode()), "*")
                )
                kid = None if msg is None else b64d(msg.subject.rsplit(".", 1)[1], "key_id")
                taken[pool] = (
                    None if msg is None or kid is None else (kid.decode(), msg.data or b"")
                )
            return FetchedPrekeys(b64d(record["bundle"], "bundle"), taken)

    async def count_prekeys(self, agent_id: str, binding: str) -> dict[str, int]:
        streams, stream, b = self._streams, self._streams.stream("DIR"), b64e(binding.encode())
        async with streams.io():
            last = await streams.last(stream, self._dir("b", agent_id, b))
            pools = json.loads(last.data)["pools"] if last is not None else []
            return {
                p: await streams.count(stream, self._dir("o", agent_id, b, b64e(p.encode()), "*"))
                for p in pools
            }

    # -- KeyPackages --------------------------------------------------------------------

    async def publish_key_package(
        self, agent_id: str, key_package_id: str, key_package: bytes, *, max_count: int
    ) -> None:
        streams = self._streams
        async with streams.io():
            if await self.count_key_packages(agent_id) >= max_count:
                raise LimitExceeded("key_packages", f"more than {max_count} KeyPackages")
            await streams.put_new(
                self._dir("k", agent_id, b64e(key_package_id.encode())), key_package
            )

    async def fetch_key_package(self, agent_id: str) -> bytes | None:
        streams = self._streams
        async with streams.io():
            msg = await streams.take(streams.stream("DIR"), self._dir("k", agent_id, "*"))
            return None if msg is None else bytes(msg.data or b"")

    async def count_key_packages(self, agent_id: str) -> int:
        streams = self._streams
        async with streams.io():
            return await streams.count(streams.stream("DIR"), self._dir("k", agent_id, "*"))

    # -- cards --------------------------------------------------------------------------

    async def put_card(self, agent_id: str, card_json: bytes, *, max_count: int) -> None:
        streams, stream, subject = self._streams, self._streams.stream("CARD"), self._card(agent_id)
        async with streams.io():
            if await streams.last(stream, subject) is None:
                # Concurrent first publishes by different agents may each pass
                # this check: the bound may be overshot by as many, never more.
                info = await streams.js.stream_info(stream)
                if int(info.state.messages or 0) >= max_count:
                    raise LimitExceeded("cards", f"the card directory holds {max_count} cards")
            await streams.publish(subject, card_json)

    async def get_cards(self, agent_ids: Sequence[str]) -> dict[str, bytes]:
        streams = self._streams
        found: dict[str, bytes] = {}
        async with streams.io():
            for i in range(0, len(agent_ids), CARD_PARALLEL):
                chunk = agent_ids[i : i + CARD_PARALLEL]
                msgs = await asyncio.gather(
                    *(streams.last(streams.stream("CARD"), self._card(a)) for a in chunk)
                )
                for agent_id, msg in zip(chunk, msgs, strict=True):
                    if msg is not None:
                        found[agent_id] = bytes(msg.data or b"")
        return found
