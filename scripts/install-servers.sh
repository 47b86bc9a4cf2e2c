#!/usr/bin/env bash
# Install the programs the tests run beside ours, from Debian packages, when missing:
# nats-server (the relay's JetStream backend) and curl (an independent HTTPS client
# for the TLS binding's interoperability tests). Used by scripts/check.
set -euo pipefail

missing=()
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
command -v curl >/dev/null 2>&1 || missing+=(curl)

if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        SUDO="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
echo "nats-server: $(nats-server --version)"
echo "curl: $(curl --version | head -n 1)"
