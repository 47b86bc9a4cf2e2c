#!/usr/bin/env bash
# Install the programs the tests run beside ours, from Debian packages, when missing:
# nats-server (the relay's JetStream backend), curl (an independent HTTPS client
# for the TLS binding's interoperability tests) and openssl (Debian's OpenSSL:
# s_client/s_server -dtls1_2 for the DTLS binding's). Used by scripts/check.
set -euo pipefail

missing=()
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)

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
echo "openssl: $(openssl version)"
