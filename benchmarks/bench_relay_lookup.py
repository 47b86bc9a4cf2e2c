"""Federation lookups: a peer's prekeys fetched at its home relay vs at our own.

Run: ``uv run python benchmarks/bench_relay_lookup.py [--lookups N] [--fresh F]``.

Two SQLite relays served by uvicorn on loopback in this process: the agent's
home relay and another (a peer's home, reached through ``RelayClient.at``); the
peer's keys are published at both. Printed, in one run: the baseline, a prekey
fetch at home by an authenticated client; the first lookup at the other relay
by a fresh agent (the lookup identity's challenge and session, then the fetch:
what a first message to a peer homed elsewhere adds); and later lookups there
(one request, as at home). Client and relays share one process and one event
loop: the figures are a floor for remote relays, not a ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from sealwire.identity import Identity
from sealwire.relay import RelayClient
from sealwire.testing.ports import free_port
from sealwire_relay import RelayConfig, RelayLimits, running_relay

BUNDLE_BYTES = 1_700
"""About a PQXDH bundle (signed prekey, ML-KEM prekey, signatures)."""
LIMITS = RelayLimits(
    key_fetch_rate_per_target=1e9, key_fetch_burst_per_target=10**9,
    key_fetch_rate_per_requester=1e9, key_fetch_burst_per_requester=10**9,
)  # fmt: skip
"""Every lookup here is of one agent's keys: the limits that guard a real relay's
key pools against draining (a burst of 32 a target) would stop the run."""


def _ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1e3:6.2f} ms over {len(samples)}"


def _config(tmp: Path, name: str) -> RelayConfig:
    return RelayConfig(
        port=free_port(), identity_path=tmp / f"{name}.key", backend="sqlite",
        backend_options={"path": str(tmp / f"{name}.sqlite3")}, limits=LIMITS,
    )  # fmt: skip


async def run(lookups: int, fresh: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-lookup-"))
    async with (
        running_relay(_config(tmp, "home")) as home_relay,
        running_relay(_config(tmp, "other")) as other_relay,
    ):
        bob = Identity.generate()
        keys = {"x25519": {str(i): bytes(32) for i in range(lookups * 2 + fresh + 10)}}
        for relay in (home_relay, other_relay):  # the same keys at both: one figure each
            async with RelayClient(relay.url, bob) as b:
                await b.publish_prekeys("signal", bytes(BUNDLE_BYTES), keys)
        home, first, later = [], [], []
        async with RelayClient(home_relay.url, Identity.generate()) as alice:
            await alice.fetch_prekeys(bob.agent_id, "signal")  # authenticated
            for _ in range(lookups):
                t = time.perf_counter()
                await alice.fetch_prekeys(bob.agent_id, "signal")
                home.append(time.perf_counter() - t)
            directory = alice.at(other_relay.url)
            await directory.fetch_prekeys(bob.agent_id, "signal")
            for _ in range(lookups):
                t = time.perf_counter()
                await directory.fetch_prekeys(bob.agent_id, "signal")
                later.append(time.perf_counter() - t)
        for _ in range(fresh):
            async with RelayClient(home_relay.url, Identity.generate()) as agent:
                t = time.perf_counter()
                await agent.at(other_relay.url).fetch_prekeys(bob.agent_id, "signal")
                first.append(time.perf_counter() - t)
    print(f"prekey fetch at the home relay (baseline)   {_ms(home)}")
    print(f"first lookup at another relay (auth + fetch) {_ms(first)}")
    print(f"later lookups at that relay                  {_ms(later)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lookups", type=int, default=300)
    parser.add_argument("--fresh", type=int, default=30)
    args = parser.parse_args()
    asyncio.run(run(args.lookups, args.fresh))


if __name__ == "__main__":
    main()
