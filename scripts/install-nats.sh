#!/usr/bin/env bash
# Install nats-server (JetStream) from the Debian package when it is missing.
# Used by .ci/run and by developers before running tests/relay against NATS.
set -euo pipefail

if command -v nats-server >/dev/null 2>&1; then
    echo "nats-server present: $(nats-server --version)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends nats-server
echo "nats-server installed: $(nats-server --version)"
