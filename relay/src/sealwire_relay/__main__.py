"""``python -m sealwire_relay --config relay.toml``: run a relay (as ``sealwire relay serve``).

Exit codes: 0 stopped by a signal, 2 usage, 3 cannot listen or storage
unreachable, 4 configuration (see :mod:`sealwire_relay._server`).
"""

from __future__ import annotations

import argparse
import sys

from sealwire.errors import ConfigurationError
from sealwire.logs import LOG_FORMATS, LOG_LEVELS, configure_logging
from sealwire_relay._server import EXIT_CONFIGURATION, RelayConfig, serve_relay


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sealwire_relay")
    parser.add_argument("--config", help="TOML file with a [relay] table (see docs/relay.md)")
    parser.add_argument(
        "--log-level", choices=list(LOG_LEVELS), default="info", help="default: info"
    )
    parser.add_argument(
        "--log-format", choices=list(LOG_FORMATS), default="console", help="default: console"
    )
    args = parser.parse_args(argv)
    configure_logging(args.log_level, args.log_format)
    try:
        config = RelayConfig.from_toml(args.config) if args.config else RelayConfig()
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIGURATION
    return serve_relay(config)


if __name__ == "__main__":
    sys.exit(main())
