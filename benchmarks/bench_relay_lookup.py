"""Federation lookups: a peer's prekeys fetched at its home relay vs at our own.

Run: ``uv run python benchmarks/bench_relay_lookup.py [--lookups N] [--fresh F]``.

One SQLite relay served by uvicorn on loopback in this process, reached under
two names: ``127.0.0.1`` (the agent's home relay) and ``localhost`` (standing
for another relay, a peer's home, through ``RelayClient.at``). Printed, in one
run: the baseline, a prekey fetch at home by an authenticated client; the
first lookup at the other relay by a fresh agent (the lookup identity's
challenge and session, then the fetch: what a first message to a peer homed
elsewhere adds); and later lookups there (one request, as at home). Client and
relay share one process and one event loop: the figures are a floor for a
remote relay, not a ceiling.
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
from sealwire_relay import RelayConfig, running_relay

BUNDLE_BYTES = 1_700
"""About a PQXDH bundle (signed prekey, ML-KEM prekey, signatures)."""


def _ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1e3:6.2f} ms over {len(samples)}"


async def run(lookups: int, fresh: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-lookup-"))
    config = RelayConfig(
        port=free_port(), identity_path=tmp / "relay.key", backend="sqlite",
        backend_options={"path": str(tmp / "relay.sqlite3")},
    )  # fmt: skip
    async with running_relay(config) as relay:
        elsewhere = relay.url.replace("127.0.0.1", "localhost")
        bob = Identity.generate()
        keys = {"x25519": {str(i): bytes(32) for i in range(lookups * 2 + fresh + 10)}}
        async with RelayClient(relay.url, bob) as b:
            await b.publish_prekeys("signal", bytes(BUNDLE_BYTES), keys)
        home, first, later = [], [], []
        async with RelayClient(relay.url, Identity.generate()) as alice:
            await alice.fetch_prekeys(bob.agent_id, "signal")  # authenticated
            for _ in range(lookups):
                t = time.perf_counter()
                await alice.fetch_prekeys(bob.agent_id, "signal")
                home.append(time.perf_counter() - t)
            directory = alice.at(elsewhere)
            await directory.fetch_prekeys(bob.agent_id, "signal")
            for _ in range(lookups):
                t = time.perf_counter()
                await directory.fetch_prekeys(bob.agent_id, "signal")
                later.append(time.perf_counter() - t)
        for _ in range(fresh):
            async with RelayClient(relay.url, Identity.generate()) as agent:
                t = time.perf_counter()
                await agent.at(elsewhere).fetch_prekeys(bob.agent_id, "signal")
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
