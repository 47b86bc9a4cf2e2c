"""``python -m sealwire_relay --config relay.toml``: run a relay (as ``sealwire relay serve``)."""

from __future__ import annotations

import argparse
import sys

from sealwire.errors import ConfigurationError
from sealwire_relay._server import RelayConfig, serve_relay


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sealwire_relay")
    parser.add_argument("--config", help="TOML file with a [relay] table")
    args = parser.parse_args(argv)
    try:
        config = RelayConfig.from_toml(args.config) if args.config else RelayConfig()
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return serve_relay(config)


if __name__ == "__main__":
    sys.exit(main())
