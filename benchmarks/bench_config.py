"""Reading sealwire.toml: what the typed schema (pydantic) costs a process and a read.

Run: ``uv run python benchmarks/bench_config.py [--processes N] [--reads N]``.

Printed, in one run:

* start-up, in fresh processes (the median of N): importing ``sealwire.config`` and
  ``sealwire.agent`` (what every command that opens a home imports; the baseline),
  then the schema module on top of them (pydantic and the models built), then
  ``tomlkit`` (imported only by commands that write the file);
* per read, in this process: ``tomllib`` parsing of a typical file (the baseline, all
  that was done before the schema), then the same with the schema's validation, then
  ``AgentConfig.from_toml`` with the loaded plugins (names, binding options).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import tomllib

from sealwire.config import AgentConfig
from sealwire.config._schema import validate_document
from sealwire.plugins import load_registry

FILE = """
[agent]
name = "bench"
description = "A Sealwire agent"
listen = ["tcp://127.0.0.1:7000", "https://127.0.0.1:8443"]
trust = "tofu"

[bindings.noise]
patterns = ["IK", "XX"]
post_quantum = true

[bindings.tls]
enroll = true

[policy]
require = ["mutual_auth", "forward_secrecy"]
prefer = ["noise", "tls"]
"""

STARTUP = """
import time
t0 = time.perf_counter()
import sealwire.config, sealwire.agent
t1 = time.perf_counter()
import sealwire.config._schema
t2 = time.perf_counter()
import tomlkit
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def startup(processes: int) -> None:
    base, schema, writer = [], [], []
    for _ in range(processes):
        out = subprocess.run(
            [sys.executable, "-c", STARTUP], capture_output=True, text=True, check=True
        ).stdout.split()
        base.append(float(out[0]))
        schema.append(float(out[1]))
        writer.append(float(out[2]))
    print(f"start-up, median of {processes} fresh processes:")
    print(f"  baseline: import sealwire.config + agent  {statistics.median(base) * 1e3:7.1f} ms")
    print(f"  + the schema (pydantic, models)         {statistics.median(schema) * 1e3:7.1f} ms")
    print(f"  + tomlkit (commands that write)         {statistics.median(writer) * 1e3:7.1f} ms")


def per_read(reads: int) -> None:
    registry = load_registry()

    def timed(work: object) -> float:
        assert callable(work)
        t = time.perf_counter()
        for _ in range(reads):
            work()
        return (time.perf_counter() - t) / reads

    parse = timed(lambda: tomllib.loads(FILE))
    validate = timed(lambda: validate_document(tomllib.loads(FILE), source="bench.toml"))
    full = timed(lambda: AgentConfig.from_toml(FILE, registry=registry))
    print(f"per read, mean of {reads}:")
    print(f"  baseline: tomllib parse                 {parse * 1e6:7.1f} us")
    print(f"  parse + schema validation               {validate * 1e6:7.1f} us")
    print(f"  AgentConfig.from_toml with the plugins  {full * 1e6:7.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=7)
    parser.add_argument("--reads", type=int, default=2000)
    args = parser.parse_args()
    startup(args.processes)
    per_read(args.reads)


if __name__ == "__main__":
    main()
